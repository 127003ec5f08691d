"""Run the reliability classes with N times the default-suite counts and print the table of docs/reliability.md.

.venv/bin/python tests/reliability/run.py [--scale N] [--seed S] [--only NAME ...] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: support.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cases import CLASSES
from counts import DEFAULT_COUNTS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default-suite case counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="class function names (fuzzed_onnx, kills, ...)")
    parser.add_argument("--verbose", action="store_true", help="print every case that was not clean")
    args = parser.parse_args(argv)
    print("| class | tried | clean | tracebacks | half-written runs | stray temp folders |")
    print("|---|---|---|---|---|---|")
    bad = 0
    for fn in CLASSES:
        if args.only and fn.__name__ not in args.only:
            continue
        count = max(1, round(DEFAULT_COUNTS[fn.__name__] * args.scale))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="wb-reliability-") as tmp:
            tally = fn(Path(tmp), count, args.seed)
        print(tally.row() + f" ({time.perf_counter() - start:.1f} s)", flush=True)
        bad += tally.tried - tally.clean
        for failure in tally.failures if args.verbose else tally.failures[:3]:
            print(f"    {failure}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
