"""``workbench`` command line: a thin layer over the same API the notebooks and widgets use.

Every :class:`WorkbenchError` is printed as one line (``error: ...``) with exit status 2, never a traceback; so is a
full disk or another operating-system error. An unexpected exception (a bug) prints one line with a hint to report
it and exits 3; ``--debug`` (or ``WORKBENCH_DEBUG=1``) shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path

from .errors import WorkbenchError


def _print_rows(rows) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_info(args) -> int:
    from .format import model_rows
    from .model.onnx_model import load_model

    model = load_model(args.model)
    if args.json:
        print(json.dumps(model.summary(), indent=1))
    else:
        _print_rows(model_rows(model))
        print("\nOperators:")
        _print_rows([(op, str(n)) for op, n in model.op_histogram.items()])
    return 0


def _config(args):
    from .config import BuildConfig, parse_shapes, parse_size

    return BuildConfig(
        precision=args.precision,
        workspace_bytes=parse_size(args.workspace) if args.workspace else None,
        optimization_level=args.opt_level,
        shapes=parse_shapes(args.shapes),
        iterations=args.iterations,
        duration_s=args.duration,
        warmup_ms=args.warmup,
        trials=args.trials,
        cuda_graph=args.cuda_graph,
        ort_graph_optimization=args.graph_optimization,
        keep_raw_profile=args.keep_raw_profile,
    )


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def cmd_profile(args) -> int:
    from .pipeline import profile
    from .progress import TqdmProgress
    from .results.metrics import summary_rows
    from .results.store import Store

    variant_options = {
        key: value
        for key, value in (
            ("calibration", args.calib),
            ("random_calibration", args.random_calib),
            ("calibration_method", args.calib_method),
            ("calibration_batch", args.calib_batch),
            ("high_precision_dtype", args.high_precision),
            ("exclude_nodes", _names(args.exclude_nodes)),
            ("exclude_op_types", _names(args.exclude_op_types)),
            ("keep_fp32_nodes", _names(args.keep_fp32_nodes)),
            ("keep_fp32_op_types", _names(args.keep_fp32_op_types)),
        )
        if value
    }
    if args.recipe and args.precision == "fp32":  # the default: the recipe says which precision
        args.precision = _recipe_precision(args.recipe)
    progress = TqdmProgress()
    try:
        run = profile(
            args.model,
            backend=args.backend,
            config=_config(args),
            inputs=args.inputs,
            eval_data=args.eval,
            progress=progress,
            tolerance=args.tolerance,
            recipe=args.recipe,
            **variant_options,
        )
    finally:
        progress.close()
    run = _record(run, Store(), args.out)
    for note in run.notes:
        print(f"note: {note}")
    _print_rows(summary_rows(run))
    if run.accuracy is not None:
        from .precision.accuracy import remedies
        from .views.report import accuracy_rows

        acc = run.accuracy
        if acc.verdict in ("broken", "degraded"):
            print(
                f"\nACCURACY {acc.verdict.upper()}: {acc.verdict_reason}\n  try: "
                + "\n  try: ".join(remedies(run.precision))
            )
        if acc.note:
            print(f"\naccuracy note: {acc.note}")
        if acc.label_accuracy is not None:
            ref = acc.reference_label_accuracy
            print(
                f"\nAccuracy on {acc.samples} labelled samples: {100 * acc.label_accuracy:.2f}%"
                + (f" (FP32 {100 * ref:.2f}%)" if ref is not None else "")
            )
        for row in accuracy_rows(run):
            print("  " + ", ".join(f"{k}: {v}" for k, v in row.items()))
    print("\nSlowest layers:")
    top = run.layers.sort_values("time_ms", ascending=False).head(args.top)
    print(top[["name", "type", "precision", "time_ms", "time_pct"]].to_string(index=False, float_format="%.4f"))
    print(f"\nRun directory: {run.directory}\nReport: {run.directory / 'report.html'}")
    return 0


def _recipe_precision(path) -> str:
    from .precision.recipe import load_recipe

    return load_recipe(path)["precision"]


def cmd_sensitivity(args) -> int:
    from .analysis.sensitivity import Sensitivity
    from .pipeline import sensitivity
    from .progress import TqdmProgress
    from .results.store import Store
    from .views.report import write_report

    variant_options = {
        key: value
        for key, value in (
            ("calibration_method", args.calib_method),
            ("calibration_batch", args.calib_batch),
            ("high_precision_dtype", args.high_precision),
            ("random_calibration", args.random_calib),
        )
        if value
    }
    progress = TqdmProgress()
    store = Store()
    try:
        run = sensitivity(
            args.model,
            args.precision,
            calibration=args.calib,
            eval_data=args.eval,
            budget=args.budget,
            group_by=args.group_by,
            scope_depth=args.scope_depth,
            max_minutes=args.max_minutes,
            max_samples=args.max_samples,
            out=args.out,
            compile_arch=args.rtx_arch,
            store=store,
            progress=progress,
            **variant_options,
        )
    finally:
        progress.close()
    stored = store.add(run)
    write_report(stored, stored.directory / "report.html")
    found = Sensitivity.from_dict(run.sensitivity)
    print(found.summary())  # the answer first: does the plan pay off against FP32 here
    print("\nMost sensitive groups (layer-wise error of all-" + found.precision + "; '=' marks a tie):")
    frame = found.scores_frame().head(args.top)
    frame["rank"] = [f"{r}=" if tie else str(r) for r, tie in zip(frame["rank"], frame["tie"])]
    frame["nodes"] = frame["nodes"].map(len)
    frame["plan"] = frame["in_plan"].map({True: "kept", False: ""})
    frame = frame.rename(columns={"label": "group", "loss": "loss if dropped"})  # measured for the plan's groups
    columns = ["rank", "group", "nodes", "added_db", "quant_snr_db", "loss if dropped", "plan"]
    print(frame[columns].to_string(index=False, float_format="%.4g", na_rep="-"))
    print("\nPlans measured (latency only where timed):")
    cands = found.candidates_frame()
    cands["kept_nodes"] = cands["kept_nodes"].map(len)
    columns = ["label", "kept_nodes", "metric", "cosine", "latency_ms", "meets"]
    columns += [c for c in ("engine_layers", "engine_activation_bytes") if c in cands]
    print(cands[columns].to_string(index=False, float_format="%.4g", na_rep="-"))
    where = run.directory if args.out else stored.directory
    print(f"\nKept in higher precision: {', '.join(found.plan['kept_nodes']) or 'none'}")
    if args.out:
        print(f"Recipe: {Path(args.out) / 'recipe.json'} (workbench profile MODEL --recipe FILE)")
    print(
        f"Runs in the history: plan {stored.id}, all-{found.precision} {run.sensitivity['profiled']['all_low']['run']}"
    )
    print(f"Run directory: {where}\nReport: {where / 'report.html'}")


def cmd_compile(args) -> int:
    from .config import BuildConfig, parse_shapes, parse_size
    from .format import human_bytes
    from .pipeline import compile as compile_model
    from .progress import TqdmProgress
    from .results.layers import fusion_view, nodes_text
    from .results.store import Store
    from .results.metrics import summary_rows

    variant_options = {
        key: value for key, value in (("calibration", args.calib), ("random_calibration", args.random_calib)) if value
    }
    config = BuildConfig(
        precision=args.precision,
        shapes=parse_shapes(args.shapes),
        workspace_bytes=parse_size(args.workspace) if args.workspace else None,
        optimization_level=args.opt_level,
    )
    progress = TqdmProgress()
    try:
        run = compile_model(
            args.model, backend=args.backend, arch=args.arch, config=config, progress=progress, **variant_options
        )
    finally:
        progress.close()
    run = _record(run, Store(), args.out)
    for note in run.notes:
        print(f"note: {note}")
    _print_rows(summary_rows(run))
    report = run.compiled
    if report is not None:  # what the summary above does not say already
        _print_rows(
            [
                (
                    "Engine layers / ONNX nodes",
                    f"{report.engine_layers} / {report.onnx_nodes} "
                    f"({report.fused_layers} fused layers, "
                    f"{len(report.folded_nodes)} node{'' if len(report.folded_nodes) == 1 else 's'} folded away)",
                )
            ]
            + (
                [
                    (
                        "Build phases",
                        str(len(report.phases)) + (" (plan from the engine cache)" if report.cache_hit else ""),
                    )
                ]
                if report.phases
                else []
            )
            + [
                (label, human_bytes(value))
                for label, value in (
                    ("Scratch memory", report.scratch_memory_bytes),
                    ("Builder peak host memory", report.builder_host_peak_bytes),
                )
                if value is not None
            ]
        )
    view = fusion_view(run.layers)
    print("\nLargest fusions (engine layer <- ONNX nodes):")
    for row in view.head(args.top).itertuples():
        print(f"  {row.name} [{row.type}, {row.precision or '?'}] <- {nodes_text(row.onnx_nodes, shown=4) or '-'}")
    print(f"\nRun directory: {run.directory}\nReport: {run.directory / 'report.html'}")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import doctor

    _print_rows(doctor())
    return 0


def _record(run, store, out=None):
    """Keep a run in the history (the workspace store) with its report; with ``out``, also write it there."""
    from .pipeline import save_with_report
    from .views.report import write_report

    # the report is written inside the run folder before the run is indexed: a listed run is always complete
    stored = store.add(run, finish=lambda saved: write_report(saved, saved.directory / "report.html"))
    return save_with_report(stored, out) if out else stored


def _load(ref):
    """A run directory, or a run id (or unique id prefix) from the history."""
    from .results.run import load_run
    from .results.store import Store

    if Path(ref).is_dir():
        return load_run(ref)
    return Store().get(ref)


def cmd_history(args) -> int:
    from .results.store import Store

    store = Store()
    runs = store.list(model=args.model)
    if runs.empty:
        print(
            f"No runs in {store.path}"
            + (f" for model '{args.model}'" if args.model else "")
            + ": 'workbench profile' adds them."
        )
        return 0
    cols = [
        "run",
        "created",
        "name",
        "shapes",
        "device",
        "backend",
        "precision",
        "mean_ms",
        "p99_ms",
        "label_accuracy",
        "min_cosine",
        "verdict",
        "timing",
    ]
    shown = runs[cols].copy()
    for col in ("mean_ms", "p99_ms", "label_accuracy", "min_cosine"):
        shown[col] = [f"{v:.4g}" if v is not None and v == v else "" for v in shown[col]]
    shown = shown.fillna("")
    shown["created"] = shown["created"].str.slice(0, 19)
    shown["device"] = [d if len(d) <= 24 else d[:23] + "…" for d in shown["device"]]
    print(shown.to_string(index=False))
    print(f"\n{len(runs)} runs in {store.path}; pass a run id to report, compare or export.")
    return 0


def cmd_reindex(args) -> int:
    import warnings

    from .results.store import Store

    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        if args.rebuild:
            store = Store.rebuild()
            added = len(store)
        else:
            store = Store()
            added = store.reindex()
    for w in skipped:
        print(f"warning: {w.message}", file=sys.stderr)
    print(
        f"{'Rebuilt the history' if args.rebuild else 'Reindexed'}: {added} run(s) added from the run folders "
        f"in {store.path}" + (f"; {len(skipped)} folder(s) skipped" if skipped else "") + "."
    )
    return 0


def cmd_import(args) -> int:
    from .results.metrics import summary_rows
    from .interop.trtexec import import_trtexec

    from .results.store import Store

    run = import_trtexec(args.paths, plan=args.plan, name=args.name)  # its source files travel as artifacts
    run = _record(run, Store(), args.out)
    for note in run.notes:
        print(f"note: {note}")
    _print_rows(summary_rows(run))
    print(f"\nRun directory: {run.directory}\nReport: {run.directory / 'report.html'}")
    return 0


def cmd_export_trtexec(args) -> int:
    from .interop.trtexec import command_for_run

    print(command_for_run(_load(args.run), version=args.version))
    return 0


def cmd_export_triton(args) -> int:
    from .interop.triton import export_triton

    path = export_triton(
        _load(args.run),
        args.out,
        name=args.name,
        max_batch_size=args.max_batch_size,
        dynamic_batching=not args.no_dynamic_batching,
        instances=args.instances,
        kind=f"KIND_{args.kind.upper()}",
        plan=args.plan,
    )
    print(f"Triton model written: {path} (config.pbtxt, {next((path / '1').iterdir()).relative_to(path)})")
    return 0


def cmd_report(args) -> int:
    from .views.report import write_report

    print(f"Report: {write_report(_load(args.run), args.out)}")
    return 0


def cmd_compare(args) -> int:
    from .analysis.compare import compare
    from .views.report import write_comparison

    comparison = compare([_load(r) for r in args.runs])
    written = write_comparison(comparison, args.out) if args.out else None
    print(comparison.to_text())
    if written:
        print(f"\nReport: {written}")
    return 0


def cmd_sweep(args) -> int:
    from .progress import Progress
    from .sweep import sweep

    if not args.model and not args.resume:
        raise WorkbenchError("workbench sweep needs a MODEL (or --resume SWEEP_ID).")

    def show(phase, step, total):
        if total == 0:
            print(phase, file=sys.stderr)

    started = {"id": args.resume or "SWEEP_ID"}

    def on_point(result, row):
        started["id"] = result.id
        c = result.record.counts()
        what = f"run {row['run']}" if row["state"] == "done" else f"{row['state']}: {row['reason']}"
        print(f"[{c['done']} done, {c['failed']} failed, {c['pending']} pending] {row['label']}: {what}", flush=True)

    from .config import BuildConfig, parse_shapes

    config = BuildConfig(shapes=parse_shapes(args.shapes), iterations=args.iterations, warmup_ms=args.warmup)
    try:
        result = sweep(
            args.model,
            precisions=args.precision,
            batches=args.batch,
            workspaces=args.workspace,
            opt_levels=args.opt_level,
            config=config,
            calibration=args.calib,
            random_calibration=args.random_calib,
            eval_data=args.eval,
            backend=args.backend,
            trials=args.trials,
            executor=args.executor,
            address=args.address,
            workers=args.workers,
            shared_paths=args.shared_paths,
            resume=args.resume,
            progress=Progress(show),
            on_point=on_point,
        )
    except KeyboardInterrupt:
        print(
            f"error: interrupted; finished points are kept: resume with workbench sweep --resume {started['id']} "
            "(workbench sweep --list shows the sweeps)",
            file=sys.stderr,
        )
        return 130
    table = result.table()
    cols = ["point", "state", "latency_ms", "samples_per_s", "error", "memory_bytes", "front"]
    print("\n" + table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for row in table[table["state"] == "failed"].itertuples():
        print(f"failed: {row.point}: {row.reason}")
    print(f"\n{result.record.summary()}\nReport: {result.report_path}")
    return 0 if not (table["state"] == "failed").any() else 1


def cmd_sweeps(args) -> int:
    from .sweep import list_sweeps

    found = list_sweeps()
    if not found:
        print("No sweeps in this workspace: 'workbench sweep MODEL ...' starts one.")
    for record in found:
        print(f"{record.summary()}  model {record.model.get('name')}")
    return 0


def _add_sweep_command(sub) -> None:
    from .config import PRECISIONS

    p = sub.add_parser(
        "sweep",
        help="build and profile every combination of settings (local workers or Ray); "
        "one run per point, a Pareto report",
    )
    p.add_argument("model", nargs="?", help="ONNX file (leave out with --resume)")
    p.add_argument("--precision", default="fp32", help=f"comma-separated, from {','.join(PRECISIONS)}")
    p.add_argument("--batch", help="comma-separated batch sizes (first dimension of every input), e.g. 1,8,32")
    p.add_argument("--workspace", help="comma-separated TensorRT workspace sizes, e.g. 1G,4G")
    p.add_argument("--opt-level", help="comma-separated TensorRT builder optimization levels, e.g. 3,5")
    p.add_argument("--shapes", default="", help="input shapes, e.g. input:1x3x224x224 (--batch replaces dim 0)")
    p.add_argument("--calib", help="calibration data for int8/fp8 (.npy/.npz or image folder)")
    p.add_argument("--random-calib", action="store_true", help="calibrate int8/fp8 on random data (labelled)")
    p.add_argument("--eval", help="evaluation data (.npz with inputs and optional 'labels') for accuracy")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"))
    p.add_argument("--trials", type=int, help="warm-up + timed loop repeats per point (default: BuildConfig's)")
    p.add_argument("--iterations", type=int, default=100, help="timed inferences per point (default 100)")
    p.add_argument("--warmup", type=float, default=200.0, help="warm-up in ms (default 200)")
    p.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local worker processes (one per GPU) or Ray tasks (default local)",
    )
    p.add_argument("--address", help="Ray cluster address (default: start a local one)")
    p.add_argument("--workers", type=int, help="points at a time (default: one per GPU, or per 2 CPU cores)")
    p.add_argument(
        "--shared-paths",
        action="store_true",
        help="Ray: the model and data paths are the same on every node (else shipped through Ray)",
    )
    p.add_argument("--resume", metavar="SWEEP_ID", help="run the pending and failed points of this sweep")
    p.add_argument("--list", action="store_true", help="list the sweeps in the workspace and exit")
    p.set_defaults(func=lambda a: cmd_sweeps(a) if a.list else cmd_sweep(a))


def cmd_roofline(args) -> int:
    from .analysis.roofline import roofline
    from .views.report import write_roofline

    run = _load(args.run)
    if args.remeasure:
        from .analysis.devices import cpu_device

        cpu_device(refresh=True)
    roof = roofline(run, args.device, model=args.model)
    print(roof.to_text(top=args.top))
    if args.out:
        print(f"\nWritten: {write_roofline(run, args.out, roof=roof)}")
    return 0


def _add_interop_commands(sub) -> None:
    """import / export / report / compare: runs made elsewhere (trtexec) in, deployable artifacts and reports out."""
    p = sub.add_parser("import", help="turn trtexec outputs (files or folders, recognised by content) into a run")
    p.add_argument(
        "paths",
        nargs="+",
        help="--exportLayerInfo/--exportProfile/--exportTimes JSON, trtexec logs, TREx metadata, or folders of them",
    )
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--plan", help="the engine file (kept with the run, for Triton export)")
    p.add_argument("--name", help="a name for the run")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a run: its trtexec command, or a Triton model repository")
    export = p.add_subparsers(dest="target", required=True)
    t = export.add_parser("trtexec", help="print the equivalent trtexec command line")
    t.add_argument("run", help="run directory or run id")
    t.add_argument("--version", type=int, default=11, choices=(10, 11), help="TensorRT major version (default 11)")
    t.set_defaults(func=cmd_export_trtexec)
    t = export.add_parser("triton", help="write <REPO>/<name>/1/model.plan|model.onnx and config.pbtxt")
    t.add_argument("run", help="run directory or run id")
    t.add_argument("--out", required=True, help="Triton model repository folder")
    t.add_argument("--name", help="model name (default: the run's model name)")
    t.add_argument("--max-batch-size", type=int, help="default: the profile's max batch (0 for a fixed batch)")
    t.add_argument("--plan", help="engine file, for imported runs that do not carry one")
    t.add_argument("--instances", type=int, default=1, help="instances per device (default 1)")
    t.add_argument("--kind", default="gpu", choices=("gpu", "cpu"), help="instance kind (default gpu)")
    t.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic batching off")
    t.set_defaults(func=cmd_export_triton)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run")
    p.add_argument("run", help="run directory or run id")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare runs (the first is the baseline); optional HTML report")
    p.add_argument("runs", nargs="+", help="two or more run directories or run ids")
    p.add_argument("--out", help="HTML file to write")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "roofline",
        help="each layer against the hardware limit (FLOPs, bytes, % of the roofline) and the model's lower bound",
    )
    p.add_argument("run", help="run directory or run id")
    p.add_argument("--device", help="GPU name (default: the run's; 'cpu' = this CPU, measured)")
    p.add_argument("--model", help="the ONNX model, when the run's own file is elsewhere (imported runs)")
    p.add_argument("--out", help="also write the roofline: .html page or .csv table")
    p.add_argument("--top", type=int, default=15, help="layers to list by time above the limit (default 15)")
    p.add_argument("--remeasure", action="store_true", help="measure this CPU's peak again (CPU runs; cached)")
    p.set_defaults(func=cmd_roofline)


def build_parser() -> argparse.ArgumentParser:
    from .config import PRECISIONS

    parser = argparse.ArgumentParser(prog="workbench", description="TensorRT optimization workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="summarise an ONNX model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("profile", help="build and profile a model; writes a run directory and report.html")
    p.add_argument("model")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "tensorrt-rtx"))
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--calib", help="calibration data for int8/fp8: .npy/.npz (keys = input names) or image folder")
    p.add_argument(
        "--random-calib", action="store_true", help="calibrate int8/fp8 on random data (the run is labelled as such)"
    )
    p.add_argument("--calib-method", choices=("entropy", "max"), help="int8/fp8 calibration (default entropy)")
    p.add_argument("--calib-batch", type=int, help="calibration batch size (default 1)")
    p.add_argument("--high-precision", choices=("fp16", "fp32"), help="int8/fp8: dtype of unquantized layers")
    p.add_argument("--exclude-nodes", help="int8/fp8: comma-separated node names (regex) to leave unquantized")
    p.add_argument("--exclude-op-types", help="int8/fp8: comma-separated op types to leave unquantized")
    p.add_argument("--keep-fp32-nodes", help="fp16/bf16: comma-separated node names (regex) to keep in FP32")
    p.add_argument("--keep-fp32-op-types", help="fp16/bf16: comma-separated op types to keep in FP32")
    p.add_argument("--shapes", default="", help="input shapes, e.g. input:1x3x224x224,mask:1x128")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iterations", type=int, default=100, help="timed inferences (default 100)")
    g.add_argument("--duration", type=float, default=0.0, help="time for at least S seconds")
    p.add_argument("--warmup", type=float, default=200.0, help="warm-up in ms (default 200)")
    p.add_argument(
        "--trials",
        type=int,
        default=3,
        help="repeat warm-up + timed loop K times; the median gets a 95%% interval and a stability "
        "verdict (default 3, the fewest that show drift; 5 or more for figures you publish)",
    )
    p.add_argument("--workspace", help="TensorRT workspace, e.g. 1G")
    p.add_argument("--opt-level", type=int, default=3, help="TensorRT builder optimization level 0-5")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: time a captured CUDA graph")
    p.add_argument("--inputs", help="inputs to time (.npz, keys = input names); default: seeded random data")
    p.add_argument(
        "--eval",
        help="evaluation data (.npz with inputs and optional 'labels') for accuracy "
        "(default: 32 calibration samples, else 32 seeded random samples)",
    )
    p.add_argument(
        "--tolerance",
        help="bounds of the accuracy verdict ok/degraded/broken, e.g. "
        "cosine_ok=0.995,cosine_broken=0.95,rel_error_ok=0.1 (see docs)",
    )
    p.add_argument(
        "--graph-optimization",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="ONNX Runtime graph optimization level (default all)",
    )
    p.add_argument(
        "--keep-raw-profile",
        action="store_true",
        help="ONNX Runtime: keep the raw profiler JSON with the run (tens of MB; summarised otherwise)",
    )
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--top", type=int, default=10, help="slowest layers to print")
    p.add_argument(
        "--recipe",
        help="precision recipe (recipe.json from 'workbench sensitivity'): its precision and "
        "the nodes it keeps in higher precision",
    )
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "sensitivity",
        help="which layers lose accuracy in low precision, and the fewest nodes to "
        "keep in higher precision to meet a budget (a recipe)",
    )
    p.add_argument("model")
    p.add_argument("--precision", default="int8", choices=("int8", "fp8", "fp16", "bf16"))
    p.add_argument("--calib", help="calibration data for int8/fp8: .npy/.npz (keys = input names) or image folder")
    p.add_argument("--random-calib", action="store_true", help="calibrate int8/fp8 on random data (labelled)")
    p.add_argument("--calib-method", choices=("entropy", "max"), help="int8/fp8 calibration (default entropy)")
    p.add_argument("--calib-batch", type=int, help="calibration batch size (default 1)")
    p.add_argument("--high-precision", choices=("fp16", "fp32"), help="int8/fp8: dtype of the kept nodes (fp16)")
    p.add_argument(
        "--eval",
        required=True,
        help="evaluation data: .npz with the model's inputs and optional 'labels' (top-1 budget)",
    )
    p.add_argument("--budget", help="top1:POINTS (default 0.5 with labels) or cosine:MIN (default 0.999)")
    p.add_argument(
        "--group-by",
        default="block",
        choices=("block", "node", "scope"),
        help="block: conv+bn+act, attention, LayerNorm, residual add (default); node; scope: name prefix",
    )
    p.add_argument("--scope-depth", type=int, default=3, help="--group-by scope: name parts per group (default 3)")
    p.add_argument("--max-samples", type=int, default=512, help="evaluation samples used (default 512)")
    p.add_argument("--max-minutes", type=float, help="stop ranking / searching after M minutes (best plan so far)")
    p.add_argument(
        "--rtx-arch",
        help="also compile every plan with TensorRT-RTX for this GPU architecture (sm89, "
        "auto...): engine layer count and memory per plan",
    )
    p.add_argument("--top", type=int, default=15, help="groups to print")
    p.add_argument("--out", help="write plan/ and all-<precision>/ run directories and recipe.json here")
    p.set_defaults(func=cmd_sensitivity)
    p = sub.add_parser(
        "compile",
        help="build the real engine without running it (TensorRT-RTX: no GPU needed); "
        "writes a run directory and report.html marked compiled, not run",
    )
    p.add_argument("model")
    p.add_argument(
        "--backend",
        default="tensorrt-rtx",
        choices=("tensorrt-rtx", "onnxruntime"),
        help="tensorrt-rtx: the real engine for --arch; onnxruntime: the graph after ORT's own fusions",
    )
    p.add_argument(
        "--arch",
        help="target GPU architecture: sm75, sm80, sm86, sm89, sm120, sm121 "
        "(default: this GPU if TensorRT-RTX runs on it, else sm89)",
    )
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--shapes", default="", help="shapes of dynamic inputs, e.g. input_ids:1x128,attention_mask:1x128")
    p.add_argument("--calib", help="calibration data for int8/fp8: .npy/.npz (keys = input names) or image folder")
    p.add_argument(
        "--random-calib", action="store_true", help="calibrate int8/fp8 on random data (the run is labelled as such)"
    )
    p.add_argument("--workspace", help="workspace limit, e.g. 1G")
    p.add_argument("--opt-level", type=int, default=3, help="builder optimization level 0-5")
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--top", type=int, default=10, help="largest fusions to print")
    p.set_defaults(func=cmd_compile)

    _add_interop_commands(sub)
    _add_sweep_command(sub)

    p = sub.add_parser(
        "history",
        help="list the runs kept in the workspace (WORKBENCH_WORKSPACE, default: the "
        "checkout's workspace/, shared with the notebooks)",
    )
    p.add_argument("--model", help="only runs of this model (name or sha256)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("reindex", help="list run folders the history is missing; --rebuild a damaged history")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="move a damaged or foreign runs.sqlite aside and rebuild it from the run folders",
    )
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("doctor", help="what is installed and what can run here, and why not")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args = parser.parse_args(argv)
    if getattr(args, "duration", 0):
        args.iterations = 1  # --duration alone decides how long the timed loop runs
    debug = args.debug or os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `workbench info ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as e:  # the machine, not the workbench: a full disk, a permission, a vanished folder
        if debug:
            traceback.print_exc()
        if e.errno == errno.ENOSPC:
            from .paths import disk_full_error

            print(f"error: {disk_full_error(e)}", file=sys.stderr)
        else:
            where = f" ('{e.filename}')" if e.filename else ""
            print(
                f"error: {e.strerror or type(e).__name__}{where}: check the path and its permissions, and that "
                "the disk is writable.",
                file=sys.stderr,
            )
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: one line and how to report it, the traceback on request
        if debug:
            traceback.print_exc()
        text = " ".join(str(e).split())[:200]
        print(
            f"error: unexpected {type(e).__name__}: {text} — this is a workbench bug; please report it with the "
            "output of the same command run with --debug (or WORKBENCH_DEBUG=1).",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
