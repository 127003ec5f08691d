"""README's GPU claims follow the GPU record (docs/gpu-validation.md): it never says TensorRT ran while the record
says no TensorRT engine has been built."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_BUILT = "no tensorrt engine has been built"


def _what_runs_where(readme: str) -> str:
    start = readme.index("## What runs where")
    return readme[start : readme.index("\n## ", start + 1)]


def test_readme_says_tensorrt_has_not_run_while_the_gpu_record_says_so():
    record = (REPO / "docs" / "gpu-validation.md").read_text().lower()
    section = _what_runs_where((REPO / "README.md").read_text())
    if NOT_BUILT in record:
        assert NOT_BUILT in section.lower(), "README's 'What runs where' must say no TensorRT engine has been built"
        build_row = next(line for line in section.splitlines() if line.startswith("| build + profile"))
        gpu_cell = build_row.split("|")[3]
        assert re.search(r"TensorRT\b[^|]*pending", gpu_cell), f"the GPU build cell claims TensorRT ran: {gpu_cell}"
        assert "all precisions" not in gpu_cell
    for measured in ("ONNX Runtime CUDA", "H200"):  # what the record holds figures of is named
        assert measured in section
