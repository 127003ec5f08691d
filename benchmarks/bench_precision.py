"""Time ModelOpt PTQ and AutoCast through the workbench against calling ModelOpt directly (same model, same data).

    .venv/bin/python benchmarks/bench_precision.py [--repeats 3]

The workbench side is ``make_variant`` with an empty cache each time (so it really transforms) and includes what it
adds: validating the variant, analysing what changed, writing the cache entry. The direct side calls
``modelopt.onnx.quantization.quantize`` / ``modelopt.onnx.autocast.convert_to_mixed_precision`` with the same
settings (CPU calibration, the same calibration batch) and saves the model. Prints the median of ``--repeats`` runs
and the ratio workbench / direct.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.model.inputs import make_inputs  # noqa: E402
from workbench.model.onnx_model import load_model  # noqa: E402
from workbench.precision.variant import make_variant  # noqa: E402
from workbench.model.samples import digits_calibration, sample_path  # noqa: E402


def cases() -> list[tuple[str, str, dict]]:
    """(sample, precision, calibration arrays or None)."""
    resnet = load_model(sample_path("resnet_mini"))
    return [
        ("digits_cnn", "int8", digits_calibration()),
        ("digits_cnn", "fp16", None),
        ("resnet_mini", "int8", make_inputs(resnet, {"input": (64, 3, 128, 128)}, seed=0)),
        ("resnet_mini", "fp16", None),
        ("transformer_encoder", "fp16", None),
    ]


def direct(sample: str, precision: str, calibration, work: Path) -> None:
    source = work / f"{sample}.onnx"
    shutil.copy(sample_path(sample), source)
    out = work / f"{sample}.{precision}.onnx"
    if precision in ("int8", "fp8"):
        from modelopt.onnx.quantization import quantize

        shapes = ",".join(f"{k}:{'x'.join(map(str, (1, *v.shape[1:])))}" for k, v in calibration.items())
        quantize(
            onnx_path=str(source),
            quantize_mode=precision,
            calibration_data=calibration,
            calibration_shapes=shapes,
            calibration_method="entropy",
            calibration_eps=["cpu"],
            output_path=str(out),
        )
    else:
        import onnx
        from modelopt.onnx.autocast import convert_to_mixed_precision

        onnx.save(
            convert_to_mixed_precision(onnx_path=str(source), low_precision_type=precision, keep_io_types=True),
            str(out),
        )


def through_workbench(sample: str, precision: str, calibration, work: Path) -> None:
    make_variant(sample_path(sample), precision, calibration=calibration, cache_dir=work / "cache")


def timed(fn, *args) -> float:
    with (
        tempfile.TemporaryDirectory() as tmp,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        contextlib.redirect_stderr(devnull),
    ):
        start = time.perf_counter()
        fn(*args, Path(tmp))
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for sample, precision, calibration in cases():
        timed(direct, sample, precision, calibration)  # warm-up: imports, ORT initialisation
        timed(through_workbench, sample, precision, calibration)
        d = statistics.median(timed(direct, sample, precision, calibration) for _ in range(args.repeats))
        w = statistics.median(timed(through_workbench, sample, precision, calibration) for _ in range(args.repeats))
        samples = len(next(iter(calibration.values()))) if calibration else 0
        rows.append((sample, precision, samples, d, w, w / d))
        print(
            f"{sample:20s} {precision:5s} calib={samples:<4d} direct {d:7.3f} s  workbench {w:7.3f} s  "
            f"ratio {w / d:5.2f}",
            flush=True,
        )
    ratios = np.array([r[-1] for r in rows])
    print(f"median ratio workbench/direct: {np.median(ratios):.2f} (min {ratios.min():.2f}, max {ratios.max():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
