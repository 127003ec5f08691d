"""One reader of frozen dataclasses from their dicts (run.json's parts, a sensitivity search, a load test)."""

import dataclasses
import json

import pytest

from workbench.errors import WorkbenchError
from workbench.records import from_dict
from workbench.results.run import Accuracy, Conditions, ConditionsSnapshot, OutputAgreement
from workbench.results.serving import Serving, ServingConfig, ServingLevel


def test_a_dict_from_json_reads_back_equal_with_nested_dataclasses_and_tuples():
    accuracy = Accuracy(
        samples=32,
        outputs=(OutputAgreement("y", 0.5, 0.1, 0.01, 0.999, top1_agreement=0.97),),
        verdict="ok",
        tolerance={"min_cosine": 0.99},
    )
    conditions = Conditions(ConditionsSnapshot(governor="performance", gpu_throttle=("power",)), warnings=("hot",))
    level = ServingLevel(1, 100, 0, 1.0, 100.0, 1.0, 1.1, 1.2, 1.3, 1.05, True, 3, 100, 100, 100)
    serving = Serving("tritonserver", "onnxruntime", "grpc", "grpc.aio", ServingConfig(8, True, (4, 8)), (level,))
    for value in (accuracy, conditions, serving):
        read = from_dict(type(value), json.loads(json.dumps(dataclasses.asdict(value))))
        assert read == value
    assert isinstance(read.levels, tuple) and read.config.preferred_batch_sizes == (4, 8)


def test_lenient_by_default_strict_when_asked():
    written_later = {"samples": 8, "verdict": "broken", "added_by_a_later_release": 1}
    assert from_dict(Accuracy, written_later) == Accuracy(samples=8, verdict="broken")  # defaults for the rest
    with pytest.raises(WorkbenchError, match=r"Unknown key\(s\) 'added_by_a_later_release' in the tolerance: use "):
        from_dict(Accuracy, written_later, strict=True, what="the tolerance")
    assert from_dict(Accuracy, None) is None
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'name'"):
        from_dict(OutputAgreement, {"max_abs_error": 0.1, "max_rel_error": 0, "mean_rel_error": 0, "cosine": 1})
