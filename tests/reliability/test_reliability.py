"""The reliability suite (see ``cases.py``): every class replayed with the default counts must be clean — 0
tracebacks, 0 half-written runs, 0 stray temp folders. ``WORKBENCH_RELIABILITY_SCALE=N`` multiplies the counts;
``python tests/reliability/run.py --scale N`` prints the table of docs/reliability.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cases import CLASSES
from counts import DEFAULT_COUNTS

SCALE = float(os.environ.get("WORKBENCH_RELIABILITY_SCALE", "1"))


@pytest.mark.parametrize("replay", CLASSES, ids=[fn.__name__ for fn in CLASSES])
def test_every_case_is_clean(replay, tmp_path):
    count = max(1, round(DEFAULT_COUNTS[replay.__name__] * SCALE))
    tally = replay(tmp_path, count, 0)
    if tally.tried == 0 and tally.note.startswith("not run"):
        pytest.skip(tally.note)
    assert tally.tried >= min(count, 8), tally.note
    assert (tally.tracebacks, tally.half_written, tally.stray_temps) == (0, 0, 0), "\n".join(tally.failures[:10])
    assert tally.clean == tally.tried
