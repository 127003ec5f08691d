"""Print the digits model's accuracy on its held-out test set for each precision variant (ONNX Runtime, CPU).

    .venv/bin/python scripts/digits_accuracy.py [--precisions fp32 fp16 int8] [--calibration-method entropy]

Variants are made with ModelOpt (AutoCast for fp16/bf16, PTQ with the 256 training-split calibration samples for
int8/fp8) and cached like every workbench variant (WORKBENCH_CACHE or ~/.cache/trt-workbench).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.precision.accuracy import measure_accuracy  # noqa: E402
from workbench.config import PRECISIONS  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.precision.variant import make_variant  # noqa: E402
from workbench.model.samples import digits_calibration, digits_test_set, sample_path  # noqa: E402


def rows(precisions, calibration_method: str, cache_dir=None) -> list[dict]:
    inputs, labels = digits_test_set()
    result = []
    for precision in precisions:
        options = {"cache_dir": cache_dir}
        if precision in ("int8", "fp8"):
            options.update(calibration=digits_calibration(), calibration_method=calibration_method)
        variant = make_variant(sample_path("digits_cnn"), precision, **options)
        accuracy = measure_accuracy(variant, inputs, labels)
        logits = accuracy.outputs[0] if accuracy.outputs else None
        result.append(
            {
                "precision": variant.label,
                "test accuracy": accuracy.label_accuracy,
                "fp32 accuracy": accuracy.reference_label_accuracy,
                "top-1 agreement": logits.top1_agreement if logits else None,
                "max abs error": logits.max_abs_error if logits else None,
                "cosine": logits.cosine if logits else None,
                "graph": variant.changes.get("summary", ""),
                "note": accuracy.note.split(":")[0] if accuracy.note.startswith("accuracy checked only") else "",
            }
        )
    return result


def table(result: list[dict]) -> str:
    headers = list(result[0])
    cells = [[_cell(r[h]) for h in headers] for r in result]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.3g}"
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"], choices=PRECISIONS)
    parser.add_argument("--calibration-method", default="entropy", choices=("entropy", "max"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        result = rows(args.precisions, args.calibration_method, args.cache_dir)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    inputs, labels = digits_test_set()
    print(f"digits_cnn on its held-out test set ({len(labels)} images), ONNX Runtime CPU")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
