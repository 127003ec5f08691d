"""Replicate coverage of the latency interval: the same profile, made again minutes later, should measure a median
inside the first run's 95% interval about 95% of the time.

Collects ``--replicates`` profiles of each sample (a fresh engine each time, ``--gap`` seconds between rounds) and
prints, per model and overall, how many ordered pairs (first run, rerun) have the rerun's median inside the first
run's interval, with the interval the workbench reports (``Run.timing``) and what the run said about its stability.

.venv/bin/python benchmarks/interval_coverage.py [--replicates 6] [--gap 60] [--out coverage.json]
.venv/bin/python benchmarks/interval_coverage.py --evaluate coverage.json   # recompute from collected samples
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import time

import workbench as wb
from workbench.backends import choose_backend
from workbench.model.samples import sample_path
from workbench.precision.variant import make_variant
from workbench.records import from_dict
from workbench.results.run import GpuTime, Timing
from workbench.results.stats import median_ci

MODELS = ("digits_cnn", "resnet_mini", "transformer_encoder")


def collect(models, replicates: int, gap_s: float, config: wb.BuildConfig, backend: str = "auto") -> list[dict]:
    backend, _ = choose_backend(backend)
    loaded = {name: wb.load_model(sample_path(name)) for name in models}
    rows = []
    for r in range(replicates):
        if r:
            time.sleep(gap_s)
        for name, model in loaded.items():
            with backend.build(make_variant(model), config) as engine:
                run = backend.profile(engine, wb.make_inputs(model, config.shape_map), config)
            rows.append(
                {
                    "model": name,
                    "replicate": r,
                    "created": run.created,
                    "trials": [list(t) for t in run.trial_samples],
                    "conditions": run.conditions
                    and {
                        "before": vars(run.conditions.before),
                        "after": vars(run.conditions.after),
                        "warnings": list(run.conditions.warnings),
                    },
                    "timing": vars(run.timing) if run.timing else None,
                    "cpu_wait": [t.cpu_wait for t in run.trials],
                }
            )
            t = run.timing
            print(f"{name:<22} replicate {r}: {t.text()}", flush=True)
    return rows


def _timing(row: dict, trials: int | None) -> Timing:
    """The row's Timing recomputed by this checkout from what the run recorded (samples, CPU waits, each trial's
    SM clock and CUPTI's busy time where a GPU run has them)."""
    return Timing.from_trials(
        row["trials"][:trials] if trials else row["trials"],
        cpu_wait=_waited(row),
        gpu_sm_mhz=tuple(m for m in (row.get("gpu_sm_mhz") or ())[: trials or None] if m is not None),
        gpu_time=from_dict(GpuTime, row.get("gpu_time")),
    )


def _waited(row: dict) -> float | None:
    waits = [w for w in row.get("cpu_wait") or () if w is not None]
    return max(waits) if waits else None


def coverage(rows: list[dict], trials: int | None = None, session_only: bool = False) -> dict:
    """Per model: ordered pairs (i, j), i != j, and how many have j's median inside i's interval (recomputed with
    this checkout's :class:`Timing`, so a changed method can be judged on the same samples; ``trials``: the first
    that many trials of each run only; ``session_only``: judge the session's bootstrap interval of the median, the
    interval runs reported before rerun intervals)."""
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    out = {}
    for name, runs in by_model.items():
        timings = [_timing(r, trials) for r in runs]
        if session_only:  # the interval before rerun intervals: this session's bootstrap interval of its median
            timings = [
                dataclasses.replace(t, ci_low_ms=i.low, ci_high_ms=i.high)
                for t, i in zip(timings, (median_ci(r["trials"][:trials] if trials else r["trials"]) for r in runs))
            ]
        pairs = inside = 0
        for i, j in itertools.permutations(range(len(runs)), 2):
            pairs += 1
            inside += timings[i].ci_low_ms <= timings[j].median_ms <= timings[i].ci_high_ms
        unstable = sum(t.verdict != "stable" for t in timings)
        misses = [
            (i, j)
            for i, j in itertools.permutations(range(len(runs)), 2)
            if not timings[i].ci_low_ms <= timings[j].median_ms <= timings[i].ci_high_ms
        ]
        labelled = [(i, j) for i, j in misses if timings[i].verdict != "stable" or timings[j].verdict != "stable"]
        causes = collections.Counter(
            name for i, j in labelled for name in {c.split(" (")[0] for c in (*timings[i].causes, *timings[j].causes)}
        )
        width = sum((t.ci_high_ms - t.ci_low_ms) / 2 / t.median_ms for t in timings) / len(timings)
        medians = [t.median_ms for t in timings]
        out[name] = {
            "pairs": pairs,
            "inside": inside,
            "runs": len(runs),
            "labelled_unstable": unstable,
            "misses": len(misses),
            "misses_labelled_unstable": len(labelled),
            "miss_causes": dict(causes),
            "worst_unlabelled_miss": max(
                (
                    abs(timings[j].median_ms - timings[i].median_ms) / timings[i].median_ms
                    for i, j in misses
                    if (i, j) not in labelled
                ),
                default=0.0,
            ),
            "mean_half_width": width,
            "median_range_ms": (min(medians), max(medians)),
            "pairs_of_stable_runs": sum(
                1
                for i, j in itertools.permutations(range(len(runs)), 2)
                if timings[i].verdict == "stable" and timings[j].verdict == "stable"
            ),
            "inside_of_stable_runs": sum(
                timings[i].ci_low_ms <= timings[j].median_ms <= timings[i].ci_high_ms
                for i, j in itertools.permutations(range(len(runs)), 2)
                if timings[i].verdict == "stable" and timings[j].verdict == "stable"
            ),
        }
    return out


def report(result: dict) -> None:
    total = sum(m["pairs"] for m in result.values())
    inside = sum(m["inside"] for m in result.values())
    width = max((len(name) for name in result), default=22)
    for name, m in result.items():
        if not m["pairs"]:
            continue
        lo, hi = m["median_range_ms"]
        print(
            f"{name:<{width}} {m['inside']:>3}/{m['pairs']:<3} pairs inside ({100 * m['inside'] / m['pairs']:.0f}%), "
            f"mean half-width ±{100 * m['mean_half_width']:.1f}%, medians {lo:.4g}–{hi:.4g} ms, "
            f"{m['labelled_unstable']}/{m['runs']} runs labelled unstable; stable-labelled pairs "
            f"{m['inside_of_stable_runs']}/{m['pairs_of_stable_runs']}; misses {m['misses']}, "
            f"{m['misses_labelled_unstable']} with a run labelled unstable "
            f"({', '.join(f'{k} ×{v}' for k, v in m['miss_causes'].items()) or '–'})"
            + (
                f", unlabelled misses up to {100 * m['worst_unlabelled_miss']:.1f}%"
                if m["worst_unlabelled_miss"]
                else ""
            )
        )
    misses = sum(m["misses"] for m in result.values())
    labelled = sum(m["misses_labelled_unstable"] for m in result.values())
    stable_pairs = sum(m["pairs_of_stable_runs"] for m in result.values())
    stable_inside = sum(m["inside_of_stable_runs"] for m in result.values())
    print(
        f"{'all':<22} {inside}/{total} pairs inside ({100 * inside / max(total, 1):.0f}%); "
        f"{labelled}/{misses} misses have a run labelled unstable; pairs of stable-labelled runs "
        f"{stable_inside}/{stable_pairs} inside ({100 * stable_inside / max(stable_pairs, 1):.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=6)
    parser.add_argument("--gap", type=float, default=60.0, help="seconds between rounds")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--backend", default="auto", help="auto, onnxruntime or tensorrt")
    parser.add_argument("--trials", type=int, default=wb.BuildConfig().trials)
    parser.add_argument("--out", help="write the collected samples here (JSON)")
    parser.add_argument(
        "--evaluate", nargs="+", help="only recompute coverage from samples collected earlier (files joined)"
    )
    parser.add_argument(
        "--without-gpu-labels",
        action="store_true",
        help="judge without the trials' GPU clocks and CUPTI's busy time (as runs were labelled before)",
    )
    parser.add_argument("--first-trials", type=int, help="evaluate with the first N trials of each run only")
    parser.add_argument(
        "--session-interval", action="store_true", help="judge the session's bootstrap interval (the old method)"
    )
    args = parser.parse_args()
    if args.evaluate:
        rows = []
        for name in args.evaluate:
            with open(name) as f:
                rows += json.load(f)["rows"]
        if args.without_gpu_labels:
            rows = [{**r, "gpu_sm_mhz": None, "gpu_time": None} for r in rows]
    else:
        rows = collect(
            args.models.split(","), args.replicates, args.gap, wb.BuildConfig(trials=args.trials), args.backend
        )
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"rows": rows}, f)
    report(coverage(rows, args.first_trials, args.session_interval))


if __name__ == "__main__":
    main()
