"""Cost of each step against model size: info, profile FP32 / FP16 / INT8, roofline, report, compile.

.venv/bin/python benchmarks/bench_scale.py [MODEL.onnx ...] [--steps info,fp32,fp16,int8,roofline,report,compile]
    [--calib-samples 128] [--iterations N] [--trials N]

Each step runs as its own ``workbench`` CLI process (as a user runs it), so its wall time, CPU time (user +
system of the process and the children it waited for, from ``wait4``: less sensitive to a shared machine's load than
wall time) and peak resident memory (the process's own high-water mark) are the step's alone. Each run has its own
variant cache: INT8 calibrates every time, as a first profile does. Without ``--iterations`` / ``--trials`` a step
times what the CLI's defaults time. INT8 calibrates on ``--calib-samples``
seeded random samples at the profiled shapes (a .npz written first, not counted). The roofline and report steps
read the FP32 run. The machine's load average is printed beside every step: on a shared machine, compare steps of
one run (ratios), not runs of different hours. Default models: the bundled samples; pass exported ones (e.g. a
torchvision ResNet-50 or ViT-B/16 exported with ``weights=None``) to see the curve at 100-350 MB.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS = ("info", "fp32", "fp16", "int8", "roofline", "report", "compile")


def run_step(argv: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """Run the workbench CLI with ``argv`` in ``cwd``: (wall seconds, CPU seconds (user + system, the child's
    own), peak RSS MiB, exit code, output)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "WORKBENCH_WORKSPACE": str(cwd / "workspace"),  # the runs go with the temporary folder
        "WORKBENCH_CACHE": str(cwd / "cache"),  # no variant from an earlier run: each step does its whole work
    }
    out = cwd / "step.log"
    start = time.perf_counter()
    with open(out, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *argv], cwd=cwd, env=env, stdout=log, stderr=log
        )
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, out.read_text()


def _in_child(code: str, *args: str) -> str:
    """Run ``code`` in a child Python (its stdout returned). The bench process itself loads no model: a child
    forked from it would inherit its resident size as its own high-water mark (Linux keeps it across exec)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


_CALIBRATION = """
import sys, numpy as np, workbench as wb
from workbench.model.inputs import evaluation_inputs
np.savez(sys.argv[2], **evaluation_inputs(wb.load_model(sys.argv[1]), samples=int(sys.argv[3]), seed=1))
"""


def calibration_file(model_path: Path, samples: int, folder: Path) -> Path:
    path = folder / f"{model_path.stem}-calib{samples}.npz"
    _in_child(_CALIBRATION, str(model_path), str(path), str(samples))
    return path


def bench(model_path: Path, steps: list[str], args, folder: Path) -> list[dict]:
    parameters = int(
        _in_child("import sys, workbench as wb; print(wb.load_model(sys.argv[1]).parameters)", str(model_path))
    )
    size_mb = model_path.stat().st_size / 2**20
    timing = [
        *(["--iterations", str(args.iterations)] if args.iterations else []),
        *(["--trials", str(args.trials)] if args.trials else []),
    ]
    rows, run_dir = [], None
    for step in steps:
        if step in ("roofline", "report") and run_dir is None:
            continue  # they read the FP32 run
        if step == "info":
            argv = ["info", str(model_path)]
        elif step in ("fp32", "fp16"):
            argv = ["profile", str(model_path), "--precision", step, "--backend", "onnxruntime", *timing]
        elif step == "int8":
            calib = calibration_file(model_path, args.calib_samples, folder)
            argv = [
                "profile",
                str(model_path),
                "--precision",
                "int8",
                "--backend",
                "onnxruntime",
                "--calib",
                str(calib),
            ]
            argv += timing
        elif step == "roofline":
            argv = ["roofline", str(run_dir), "--device", "cpu"]
        elif step == "report":
            argv = ["report", str(run_dir), "--out", str(folder / "report.html")]
        else:
            argv = ["compile", str(model_path)]
        load_before = os.getloadavg()[0]
        wall, cpu, peak, code, output = run_step(argv, folder)
        found = re.search(r"^Run directory: (.+)$", output, re.M)
        if step == "fp32" and found:
            run_dir = Path(found.group(1).strip())
        error = next((ln for ln in output.splitlines() if ln.startswith("error:")), "") if code else ""
        rows.append(
            {
                "model": model_path.stem,
                "size_mb": size_mb,
                "parameters": parameters,
                "step": step,
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_mib": peak,
                "load": (load_before, os.getloadavg()[0]),
                "result": "ok" if code == 0 else (error[:90] or f"exit {code}"),
            }
        )
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    return (
        f"| {r['model']} | {r['size_mb']:.1f} | {r['parameters'] / 1e6:.2f} M | {r['step']} | {r['wall_s']:.1f} | "
        f"{r['cpu_s']:.1f} | {r['peak_mib']:.0f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} | {r['result']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", type=Path, default=[REPO / "data/digits_cnn.onnx", REPO / "data/resnet_mini.onnx"]
    )
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--calib-samples", type=int, default=128)
    parser.add_argument("--iterations", type=int, help="timed runs per trial (default: the CLI's own)")
    parser.add_argument("--trials", type=int, help="trials (default: the CLI's own)")
    args = parser.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step {unknown[0]}: choose from {', '.join(STEPS)}")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    print("| model | file MB | parameters | step | wall s | CPU s | peak MiB | load before-after | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for path in args.models:
            bench(path.resolve(), steps, args, Path(tmp))


if __name__ == "__main__":
    main()
