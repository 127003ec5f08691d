"""``workbench`` command line: a thin layer over the same API the notebooks and widgets use.

Every :class:`WorkbenchError` is printed as one line (``error: ...``) with exit status 2, never a traceback; so is a
full disk or another operating-system error. An unexpected exception (a bug) prints one line with a hint to report
it and exits 3; ``--debug`` (or ``WORKBENCH_DEBUG=1``) shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path

from .config import AUTO_ITERATIONS, AUTO_TRIAL_S, BuildConfig
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


def _named(args, *names) -> dict:
    """The options named as the API's keywords, passed on as given."""
    return {name: getattr(args, name) for name in names}


def _print_findings(run) -> None:
    """The run's failed self-checks, first: no figure below is to be read before them."""
    for finding in run.findings:
        print(f"check {finding.text()}")


def _config(args, **changes) -> BuildConfig:
    """The BuildConfig this command's option groups read from ``args`` (BuildConfig's default for each option not
    given), with ``changes``."""
    fields = {}
    for options in args.option_groups:
        fields.update({key: value for key, value in options.config(args).items() if value is not None})
    return DEFAULTS.replace(**{**fields, **changes})


def _variant_options(args) -> dict:
    """make_variant's keywords from this command's option groups: what the user gave."""
    return {key: value for options in args.option_groups for key, value in options.variant(args).items()}


def _print_notes(run, args) -> None:
    """The run's notes not yet shown on stderr (as the messages they were), nor the accuracy verdict, which
    ``profile`` prints below the summary with what to try."""
    acc = run.accuracy
    verdict = f"accuracy {acc.verdict.upper()}: {acc.verdict_reason}" if acc is not None else None
    for note in run.notes:
        if not (args.console and args.console.shown(note)) and note != verdict:
            print(f"note: {note}")


def _built(args, make, **options):
    """The run ``make`` (pipeline.profile or compile) builds from this command's options, kept in the history (and
    in --out), with its findings, notes and summary printed."""
    from .model.inputs import parse_value_ranges

    with contextlib.closing(_progress(args)) as progress:
        config, ranges = _config(args), parse_value_ranges(args.input_range)  # of two bad options, the first is named
        options = {**_named(args, "backend", "recipe"), **options, **_variant_options(args)}
        run = make(args.model, config=config, progress=progress, input_ranges=ranges, **options)
    return _kept(run, args)


def _kept(run, args):
    """``run`` kept in the history (and in --out), its findings, notes and summary printed: the stored run."""
    from .results.metrics import summary_rows
    from .results.store import Store

    run = _record(run, Store(), args.out)
    _print_findings(run)
    _print_notes(run, args)
    _print_rows(summary_rows(run))
    return run


def _print_where(run) -> None:
    print(f"\nRun directory: {run.directory}\nReport: {run.directory / 'report.html'}")


def cmd_profile(args) -> int:
    from .pipeline import profile
    from .results.layers import typical_ms

    run = _built(args, profile, inputs=args.inputs, eval_data=args.eval, tolerance=args.tolerance)
    if run.accuracy is not None:
        from .precision.accuracy import INCONCLUSIVE, remedies
        from .views.report import accuracy_rows

        acc = run.accuracy
        if acc.verdict in ("broken", "degraded", INCONCLUSIVE):  # what to try, where something can be tried
            tries = remedies(run.precision, run.variant.get("options")) if acc.verdict != INCONCLUSIVE else []
            print(f"\nACCURACY {acc.verdict.upper()}: {acc.verdict_reason}" + "".join(f"\n  try: {t}" for t in tries))
        if acc.note:
            print(f"\naccuracy note: {acc.note}")
        if acc.label_accuracy is not None:
            ref = acc.reference_label_accuracy
            print(
                f"\nAccuracy on {acc.samples} labelled samples: {100 * acc.label_accuracy:.2f}%"
                + (f" (FP32 {100 * ref:.2f}%)" if ref is not None else "")
            )
        for row in accuracy_rows(run):  # a figure this output has not (mask IoU of a classifier) is left out
            print("  " + ", ".join(f"{k}: {v}" for k, v in row.items() if v not in ("", None)))
    by_mean = getattr(args, "by", "median") == "mean"
    print(f"\nSlowest layers (by {'mean' if by_mean else 'median'}; time_ms is the mean):")
    key = run.layers["time_ms"] if by_mean else typical_ms(run.layers)
    top = run.layers.assign(share_pct=100 * key / key.sum()).loc[key.sort_values(ascending=False, kind="stable").index]
    top = top.head(args.top)
    columns = ["name", "type", "precision", "median_ms", "p90_ms", "time_ms", "share_pct", "outlier"]
    print(top[columns].to_string(index=False, float_format="%.4f"))
    if top["outlier"].any():
        print("outlier: a few slow inferences pulled the layer's mean (time_ms) above its 90th percentile")
    _print_where(run)
    return 0


def cmd_sensitivity(args) -> int:
    from .analysis.sensitivity import Sensitivity
    from .pipeline import sensitivity
    from .results.store import Store
    from .views.report import write_report

    store = Store()
    with contextlib.closing(_progress(args)) as progress:
        same = _named(args, "budget", "group_by", "scope_depth", "max_minutes", "max_samples", "out", "backend")
        options = {"eval_data": args.eval, "compile_arch": args.rtx_arch, **same, **_variant_options(args)}
        run = sensitivity(args.model, args.precision, store=store, progress=progress, **options)
    stored = store.add(run)
    write_report(stored, stored.directory / "report.html")
    found = Sensitivity.from_dict(run.sensitivity)
    print(found.summary())  # the answer first: does the plan pay off against FP32 here
    print("\nMost sensitive groups (layer-wise error of all-" + found.precision + "; '=' marks a tie):")
    frame = found.scores_frame().head(args.top)
    frame["rank"] = [f"{r}=" if tie else str(r) for r, tie in zip(frame["rank"], frame["tie"])]
    frame["nodes"] = frame["nodes"].map(len)
    frame["plan"] = frame["in_plan"].map({True: "kept", False: ""})
    frame["loss"] = frame["loss"].astype(float)  # measured for the plan's groups only: the others show "-"
    frame = frame.drop(columns="group").rename(columns={"label": "group", "loss": "loss if dropped"})
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
    return 0


def cmd_compile(args) -> int:
    from .format import human_bytes
    from .pipeline import compile as compile_model
    from .results.layers import fusion_view, nodes_text

    run = _built(args, compile_model, arch=args.arch)
    report = run.compiled
    if report is not None:  # what the summary above does not say already
        folded = len(report.folded_nodes)
        rows = [
            (
                "Engine layers / ONNX nodes",
                f"{report.engine_layers} / {report.onnx_nodes} ({report.fused_layers} fused layers, "
                f"{folded} node{'' if folded == 1 else 's'} folded away)",
            )
        ]
        if report.phases:
            cached = " (plan from the engine cache)" if report.cache_hit else ""
            rows.append(("Build phases", f"{len(report.phases)}{cached}"))
        if report.scratch_memory_bytes is not None:
            rows.append(("Scratch memory", human_bytes(report.scratch_memory_bytes)))
        if report.builder_host_peak_text:
            rows.append(("Builder peak host memory", report.builder_host_peak_text))
        _print_rows(rows)
    view = fusion_view(run.layers)
    print("\nLargest fusions (engine layer <- ONNX nodes):")
    for row in view.head(args.top).itertuples():
        print(f"  {row.name} [{row.type}, {row.precision or '?'}] <- {nodes_text(row.onnx_nodes, shown=4) or '-'}")
    _print_where(run)
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
    from .format import fit_table
    from .results.store import Store

    store = Store()
    runs = store.list(model=args.model)
    if runs.empty:
        which = f" for model '{args.model}'" if args.model else ""
        print(f"No runs in {store.path}{which}: 'workbench profile' adds them.")
        return 0
    cols = ["run", "created", "name", "shapes", "device", "backend", "precision", "mean_ms", "p99_ms"]
    cols += ["label_accuracy", "min_cosine", "verdict", "timing", "checks"]
    shown = runs[cols].copy()
    for col in ("mean_ms", "p99_ms", "label_accuracy", "min_cosine"):
        shown[col] = [f"{v:.4g}" if v is not None and v == v else "" for v in shown[col]]
    shown = shown.fillna("")
    shown["created"] = shown["created"].str.slice(0, 19)
    if args.wide:
        print(shown.to_string(index=False))
    else:  # what tells runs apart first; the checks, the interval and the device where the terminal has room
        keep = ["run", "name", "mean_ms", "checks", "verdict", "precision", "backend", "created", "shapes", "p99_ms"]
        text, hidden = fit_table(shown, priority=keep + ["label_accuracy", "min_cosine", "device", "timing"])
        print(text)
        if hidden:
            print(f"(left out to fit the terminal: {', '.join(hidden)}; --wide shows every column)")
    print(f"\n{len(runs)} runs in {store.path}; pass a run id to report, compare or export.")
    return 0


def cmd_reindex(args) -> int:
    from .messages import collected
    from .results.store import Store

    with collected(logging.WARNING) as skipped:  # each shown as a warning line, and counted
        if args.rebuild:
            store = Store.rebuild()
            added = len(store)
        else:
            store = Store()
            added = store.reindex()
    print(
        f"{'Rebuilt the history' if args.rebuild else 'Reindexed'}: {added} run(s) added from the run folders "
        f"in {store.path}" + (f"; {len(skipped)} folder(s) skipped" if skipped else "") + "."
    )
    if store.previous_index is not None:
        print(f"The previous index is kept as {store.previous_index.name}.")
    return 0


def cmd_import(args) -> int:
    from .analysis.checks import checked
    from .interop.trtexec import import_trtexec

    run = checked(import_trtexec(args.paths, plan=args.plan, name=args.name))  # its files travel as artifacts
    _print_where(_kept(run, args))
    return 0


def cmd_export_trtexec(args) -> int:
    from .interop.trtexec import command_for_run

    print(command_for_run(_load(args.run), version=args.version))
    return 0


def cmd_export_triton(args) -> int:
    from .interop.triton import export_triton

    path = export_triton(  # a BROKEN run: exported, with one warning line
        _load(args.run),
        args.out,
        dynamic_batching=not args.no_dynamic_batching,
        kind=f"KIND_{args.kind.upper()}",
        **_named(args, "name", "max_batch_size", "instances", "plan"),
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

    runs = [_load(r) for r in args.runs]
    if args.interleave:  # a fair A/B: every variant timed again, alternately, in this one session
        from .pipeline import interleave

        runs = list(interleave(runs, rounds=args.rounds, progress=_progress(args)))
    comparison = compare(runs)
    written = write_comparison(comparison, args.out) if args.out else None
    print(comparison.to_text(width=sys.maxsize if args.wide else None))
    if written:
        print(f"\nReport: {written}")
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is: the sweep records itself interrupted and stops its workers (the
    default action would end the process at once, leaving the record "running" and the workers' semaphores)."""


def _terminated(signum, frame):
    raise _Terminated()


def cmd_sweep(args) -> int:
    from .format import human_bytes, plain_number
    from .progress import Progress
    from .sweeps import sweep

    if not args.model and not args.resume:
        raise WorkbenchError("workbench sweep needs a MODEL (or --resume SWEEP_ID).")

    started = {"id": args.resume or "SWEEP_ID"}

    def on_point(result, row):
        started["id"] = result.id
        c = result.record.counts()
        what = f"run {row['run']}" if row["state"] == "done" else f"{row['state']}: {row['reason']}"
        print(f"[{c['done']} done, {c['failed']} failed, {c['pending']} pending] {row['label']}: {what}", flush=True)

    previous = signal.signal(signal.SIGTERM, _terminated)  # a kill (SIGTERM) ends the sweep as Ctrl-C does
    try:
        grid = {"precisions": args.precision, "batches": args.batch, **_named(args, "workspaces", "opt_levels")}
        data = {"calibration": args.calib, "random_calibration": args.random_calib, "eval_data": args.eval}
        where = _named(args, "backend", "executor", "address", "workers", "shared_paths", "resume")
        config = _config(args, precision=DEFAULTS.precision)
        result = sweep(args.model, config=config, progress=Progress(), on_point=on_point, **grid, **data, **where)
    except KeyboardInterrupt as e:
        print(
            f"error: {'terminated' if isinstance(e, _Terminated) else 'interrupted'}; finished points are kept: resume "
            f"with workbench sweep --resume {started['id']} (workbench sweep --list shows the sweeps)",
            file=sys.stderr,
        )
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    table = result.table()
    cols = ["point", "state", "latency_ms", "samples_per_s", "error", "memory_bytes", "front"]
    shown = table[cols].copy()
    for col in ("latency_ms", "samples_per_s", "error"):  # plain decimals: 0.00001234, not 1.234e-05
        shown[col] = [plain_number(v) for v in shown[col]]
    shown["memory_bytes"] = [human_bytes(v) if v == v and v is not None else "" for v in shown["memory_bytes"]]
    print("\n" + shown.rename(columns={"memory_bytes": "memory"}).to_string(index=False))
    for row in table[table["state"] == "failed"].itertuples():
        print(f"failed: {row.point}: {row.reason}")
    report = result.write_report(Path(args.out) / "report.html") if args.out else result.report_path
    print(f"\n{result.record.summary()}\nReport: {report}")
    return 0 if not (table["state"] == "failed").any() else 1


def cmd_sweeps(args) -> int:
    from .sweeps import list_sweeps

    notes: list[str] = []
    found = list_sweeps(notes=notes)
    for note in notes:  # a damaged or tampered record: the others are still listed
        print(f"note: {note}", file=sys.stderr)
    if not found:
        print("No sweeps in this workspace: 'workbench sweep MODEL ...' starts one.")
    for record in found:
        print(f"{record.summary()}  model {record.model.get('name')}")
    return 0


def cmd_roofline(args) -> int:
    from .analysis.checks import checked
    from .analysis.roofline import roofline
    from .views.report import write_roofline

    run = _load(args.run)
    if args.remeasure:
        from .analysis.devices import cpu_device

        cpu_device(refresh=True)
    roof = roofline(run, args.device, model=args.model)
    _print_findings(checked(run, roof))
    print(roof.to_text(top=args.top))
    if args.out:
        print(f"\nWritten: {write_roofline(run, args.out, roof=roof)}")
    return 0


def _progress(args):
    """Progress where it goes: bars on a terminal (widgets in Jupyter), plain lines in a log, none with -q."""
    from .progress import Progress, console_progress

    return Progress() if args.quiet else console_progress()


class _Parser(argparse.ArgumentParser):
    """Options are never matched by prefix (``--iteration`` is refused, not read as ``--iterations``), and a
    subcommand reports a wrong option with its own usage, not the top-level one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != PROG:  # a subcommand: its usage, not the top-level one
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help, read from the option itself (BuildConfig's), so the two cannot drift."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings and "default" not in text:
            text += " (default %(default)s)"
        return text


PROG = "workbench"
#: The one set of defaults (BuildConfig's): the API, the panel, sweeps and these options agree.
DEFAULTS = BuildConfig()


def _model_or_sample(text: str) -> str:
    """An argparse type: a path, or a bundled sample's name (``resnet_mini``, ``digits_calib``...), which an
    installed package carries without a data/ folder."""
    from .model.samples import SAMPLES

    if Path(text).exists():
        return text
    name = text.removesuffix(".onnx").removesuffix(".npz")
    if name in SAMPLES:
        return str(SAMPLES[name])
    if text.replace(".", "", 1).isdigit():  # `--iteration 10 MODEL`: argparse gave a misspelt option's value here
        raise argparse.ArgumentTypeError(
            f"'{text}' is a number, not a model: the option before it is probably misspelt (see --help)"
        )
    if os.sep not in text and "." not in text:  # meant as a sample's name: the names there are
        raise argparse.ArgumentTypeError(f"no file or bundled sample '{text}' (samples: {', '.join(SAMPLES)})")
    return text  # a missing file: the command says so with the path


SAMPLES_HELP = "or a bundled sample's name (see 'workbench samples')"


def _output_options(default=argparse.SUPPRESS) -> argparse.ArgumentParser:
    """--debug, -v, -q, --max-memory: taken before the subcommand (``default`` False) and after it (``workbench history --debug``;
    SUPPRESS there, so that a subcommand not given a flag leaves the top-level parser's value as it is)."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("output")
    for flags, help in (
        (["--debug"], "show the traceback of an unexpected error (or WORKBENCH_DEBUG=1)"),
        (["-v", "--verbose"], "every warning as raised, with its source, and the libraries' log messages"),
        (["-q", "--quiet"], "no progress or notes on stderr (a run's notes follow it)"),
    ):
        group.add_argument(*flags, action="store_true", default=default, help=help)
    group.add_argument(
        "--max-memory",
        default=None if default is not argparse.SUPPRESS else argparse.SUPPRESS,
        metavar="SIZE",
        help="the most memory this process may use (8G, 512M; or WORKBENCH_MAX_MEMORY): larger inputs, "
        "calibration or evaluation sets are refused before they are allocated (default: the container's limit, "
        "else the memory available)",
    )
    return parent


def _model_argument(optional: bool = False) -> argparse.ArgumentParser:
    parent = _Parser(add_help=False)
    parent.add_argument(
        "model",
        nargs="?" if optional else None,
        type=_model_or_sample,
        help=f"ONNX file {SAMPLES_HELP}" + (" (leave out with --resume)" if optional else ""),
    )
    return parent


class _Options:
    """A titled group of options that reads its own values back, as Polygraphy's argument groups do: :meth:`add`
    puts the options on a subcommand, :meth:`config` gives the BuildConfig fields they set (None: not given) and
    :meth:`variant` the make_variant keywords the user gave. A subcommand lists its groups (:func:`_command`);
    :func:`_config` and :func:`_variant_options` ask each of them, so an option is defined and read in one place."""

    title = ""

    def add(self, group) -> None:
        raise NotImplementedError

    def config(self, args) -> dict:
        return {}

    def variant(self, args) -> dict:
        return {}


def _given(**values) -> dict:
    """The keywords the user gave: None and an unset flag are not given (a 0, as --calib-batch 0, must reach its
    check)."""
    return {key: value for key, value in values.items() if value is not None and value is not False}


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list of names (None when empty)."""
    return [n.strip() for n in (text or "").split(",") if n.strip()] or None


class _Backend(_Options):
    title = "backend"

    def __init__(self, choices: tuple[str, ...], default: str, help: str):
        self.choices, self.default, self.help = choices, default, help

    def add(self, group) -> None:
        group.add_argument("--backend", default=self.default, choices=self.choices, help=self.help)


class _Build(_Options):
    """The engine one build makes (profile, compile): its precision (given, the --recipe's, else BuildConfig's)."""

    title = "build"

    def add(self, group) -> None:
        from .config import PRECISIONS

        group.add_argument(
            "--precision", choices=PRECISIONS, help=f"default: the --recipe's, else {DEFAULTS.precision}"
        )
        group.add_argument("--workspace", help="TensorRT workspace limit, e.g. 1G")
        group.add_argument(
            "--opt-level", type=int, default=DEFAULTS.optimization_level, help="TensorRT builder optimization level 0-5"
        )
        group.add_argument(
            "--recipe",
            type=_model_or_sample,
            help="precision recipe (recipe.json from 'workbench sensitivity'): its precision and the nodes it keeps "
            "in higher precision",
        )

    def config(self, args) -> dict:
        from .config import parse_size
        from .precision.recipe import load_recipe

        return {
            "precision": args.precision or (load_recipe(args.recipe)["precision"] if args.recipe else None),
            "workspace_bytes": parse_size(args.workspace) if args.workspace else None,
            "optimization_level": args.opt_level,
        }


class _Runtime(_Options):
    """How the engine runs while it is timed (profile)."""

    title = "runtime"

    def add(self, group) -> None:
        group.add_argument("--cuda-graph", action="store_true", help="TensorRT: time a captured CUDA graph")
        group.add_argument(
            "--graph-optimization",
            default=DEFAULTS.ort_graph_optimization,
            choices=("disable", "basic", "extended", "all"),
            help="ONNX Runtime graph optimization level",
        )
        group.add_argument(
            "--keep-raw-profile",
            action="store_true",
            help="ONNX Runtime: keep the raw profiler JSON with the run (tens of MB; summarised otherwise)",
        )

    def config(self, args) -> dict:
        return {
            "cuda_graph": args.cuda_graph,
            "ort_graph_optimization": args.graph_optimization,
            "keep_raw_profile": args.keep_raw_profile,
        }


class _Shapes(_Options):
    title = "shapes"

    def add(self, group) -> None:
        group.add_argument(
            "--shapes",
            default="",
            help="shapes of dynamic inputs, e.g. input:1x3x224x224,mask:1x128 (default: batch 1)",
        )

    def config(self, args) -> dict:
        from .config import parse_shapes

        return {"shapes": parse_shapes(args.shapes)}


class _InputValues(_Options):
    """Values of generated inputs (profile, compile)."""

    title = "input values"

    def add(self, group) -> None:
        group.add_argument(
            "--input-range",
            help="values of generated inputs where the graph's own ranges are not right, e.g. "
            "input_ids:0..30521,sr:16000 (the run's notes list the values each input got)",
        )


class _Calibration(_Options):
    """Where int8/fp8 scales come from (profile, sensitivity, compile, sweep)."""

    title = "calibration"

    def add(self, group) -> None:
        group.add_argument(
            "--calib",
            type=_model_or_sample,
            help=f"calibration data for int8/fp8: .npy/.npz (keys = input names) or image folder, {SAMPLES_HELP}",
        )
        group.add_argument(
            "--random-calib",
            action="store_true",
            help="calibrate int8/fp8 on random data (the run is labelled as such)",
        )

    def variant(self, args) -> dict:
        return _given(calibration=args.calib, random_calibration=args.random_calib)


class _Quantization(_Options):
    """How int8/fp8 is written into the graph (profile, sensitivity, compile)."""

    title = "quantization"

    def add(self, group) -> None:
        group.add_argument(
            "--calib-method",
            choices=("entropy", "max"),
            help="int8/fp8 calibration (default max: ModelOpt's INT8 preset for CNNs; entropy: histograms, slower)",
        )
        group.add_argument("--calib-batch", type=int, help="calibration batch size (default 1)")
        group.add_argument(
            "--high-precision", choices=("fp16", "fp32"), help="int8/fp8: dtype of the nodes left unquantized (fp16)"
        )

    def variant(self, args) -> dict:
        return _given(
            calibration_method=args.calib_method,
            calibration_batch=args.calib_batch,
            high_precision_dtype=args.high_precision,
        )


class _KeptNodes(_Options):
    """Nodes left out of the precision change (profile, compile)."""

    title = "nodes kept out of the precision change"
    LISTS = ("exclude_nodes", "exclude_op_types", "keep_fp32_nodes", "keep_fp32_op_types")

    def add(self, group) -> None:
        group.add_argument("--exclude-nodes", help="int8/fp8: comma-separated node names (regex) to leave unquantized")
        group.add_argument("--exclude-op-types", help="int8/fp8: comma-separated op types to leave unquantized")
        group.add_argument("--keep-fp32-nodes", help="fp16/bf16: comma-separated node names (regex) to keep in FP32")
        group.add_argument("--keep-fp32-op-types", help="fp16/bf16: comma-separated op types to keep in FP32")

    def variant(self, args) -> dict:
        return _given(**{name: _names(getattr(args, name)) for name in self.LISTS})


class _Evaluation(_Options):
    title = "accuracy"

    def __init__(self, required: bool = False):
        self.required = required

    def add(self, group) -> None:
        group.add_argument(
            "--eval",
            type=_model_or_sample,
            required=self.required,
            help=f"evaluation data: .npz with the model's inputs and optional 'labels', {SAMPLES_HELP}"
            + ("" if self.required else " (default: 32 calibration samples, else 32 seeded random samples)"),
        )


class _Timing(_Options):
    """The timed loop (profile, sweep): BuildConfig's defaults, as in the API and the panel."""

    title = "timing"

    def add(self, group) -> None:
        group.add_argument(
            "--iterations",
            type=int,
            help=f"timed inferences per trial, exactly (default: {AUTO_ITERATIONS[0]} to {AUTO_ITERATIONS[1]}, stopping "
            f"once a trial has run {AUTO_TRIAL_S:g} s: a slow model is timed for seconds, not minutes; the run says how "
            "many)",
        )
        group.add_argument(
            "--duration", type=float, help="time each trial for at least S seconds, instead of --iterations"
        )
        group.add_argument("--warmup", type=float, default=DEFAULTS.warmup_ms, help="warm-up in ms before each trial")
        group.add_argument(
            "--trials",
            type=int,
            default=DEFAULTS.trials,
            help="repeats of warm-up + timed loop; the median gets a 95%% interval and a stability verdict (3 is the "
            "fewest that show drift; 5 or more for figures you publish)",
        )
        group.add_argument(
            "--trial-gap",
            type=float,
            help="seconds to wait between trials, so that they sample the machine over a longer time and the "
            "interval holds for a rerun minutes later (default 0)",
        )

    def config(self, args) -> dict:
        if args.iterations and args.duration:  # not an argparse exclusive group: its usage line would list both
            raise WorkbenchError(
                "--iterations and --duration exclude each other: give one (--duration S alone sets the time)."
            )
        return {
            "iterations": 1 if args.duration else args.iterations,  # --duration alone decides how long the loop runs
            "duration_s": args.duration,
            "warmup_ms": args.warmup,
            "trials": args.trials,
            "trial_gap_s": args.trial_gap,
        }


def _command(sub, name: str, help: str, parents: list, groups=()) -> argparse.ArgumentParser:
    """A subcommand with its parent parsers (output flags, the model argument) and its option groups."""
    p = sub.add_parser(name, help=help, parents=parents)
    for options in groups:
        options.add(p.add_argument_group(options.title))
    p.set_defaults(option_groups=tuple(groups))
    return p


def _add_model_commands(sub, output, auto_backends) -> None:
    """info, profile, sensitivity, compile: one model in, a summary or a run out."""
    from .backends import COMPILERS
    from .config import GRAPH_PRECISIONS

    model = _model_argument()
    calibration, quantization, kept = _Calibration(), _Quantization(), _KeptNodes()
    build, shapes, values = _Build(), _Shapes(), _InputValues()

    p = sub.add_parser("info", help="summarise an ONNX model", parents=[output, model])
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = _command(
        sub,
        "profile",
        "build and profile a model; writes a run directory and report.html",
        [output, model],
        [auto_backends, build, shapes, values, _Timing(), _Runtime(), calibration, quantization, kept, _Evaluation()],
    )
    p.add_argument(
        "--inputs", type=_model_or_sample, help="inputs to time (.npz, keys = input names); default: seeded random data"
    )
    p.add_argument(
        "--tolerance",
        help="bounds of the accuracy verdict ok/degraded/broken, e.g. "
        "cosine_ok=0.995,cosine_broken=0.95,rel_error_ok=0.1 (see docs)",
    )
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--top", type=int, default=10, help="slowest layers to print")
    p.add_argument(
        "--by", choices=("median", "mean"), default="median", help="rank the slowest layers by their median or mean"
    )
    p.set_defaults(func=cmd_profile)

    p = _command(
        sub,
        "sensitivity",
        "which layers lose accuracy in low precision, and the fewest nodes to keep in higher precision to meet a "
        "budget (a recipe)",
        [output, model],
        [auto_backends, calibration, quantization, _Evaluation(required=True)],
    )
    p.add_argument("--precision", default="int8", choices=GRAPH_PRECISIONS)
    p.add_argument("--budget", help="top1:POINTS (default 0.5 with labels) or cosine:MIN (default 0.999)")
    p.add_argument(
        "--group-by",
        default="block",
        choices=("block", "node", "scope"),
        help="block: conv+bn+act, attention, LayerNorm, residual add; node; scope: name prefix",
    )
    p.add_argument("--scope-depth", type=int, default=3, help="--group-by scope: name parts per group")
    p.add_argument("--max-samples", type=int, default=512, help="evaluation samples used")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="bound the whole command, calibration included: the search stops with the best plan so far, the "
        "final profiles take fewer runs; a calibration the limit ends is an error naming the fix",
    )
    p.add_argument(
        "--rtx-arch",
        help="also compile every plan with TensorRT-RTX for this GPU architecture (sm89, "
        "auto...): engine layer count and memory per plan",
    )
    p.add_argument("--top", type=int, default=15, help="groups to print")
    p.add_argument("--out", help="write plan/ and all-<precision>/ run directories and recipe.json here")
    p.set_defaults(func=cmd_sensitivity)

    compilers = _Backend(
        COMPILERS,
        COMPILERS[0],
        "tensorrt-rtx: the real engine for --arch; onnxruntime: the graph after ORT's own fusions",
    )
    p = _command(
        sub,
        "compile",
        "build the real engine without running it (TensorRT-RTX: no GPU needed); writes a run directory and "
        "report.html marked compiled, not run",
        [output, model],
        [compilers, build, shapes, values, calibration, quantization, kept],
    )
    p.add_argument(
        "--arch",
        help="target GPU architecture: sm75, sm80, sm86, sm89, sm120, sm121 "
        "(default: this GPU if TensorRT-RTX runs on it, else sm89)",
    )
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--top", type=int, default=10, help="largest fusions to print")
    p.set_defaults(func=cmd_compile)


def _add_sweep_command(sub, output, auto_backends) -> None:
    from .config import PRECISIONS

    p = _command(
        sub,
        "sweep",
        "build and profile every combination of settings (local workers or Ray); one run per point, a Pareto report",
        [output, _model_argument(optional=True)],
        [auto_backends, _Shapes(), _Timing(), _Calibration(), _Evaluation()],
    )
    grid = p.add_argument_group("the grid (comma-separated values; every combination is a point)")
    grid.add_argument("--precision", default=DEFAULTS.precision.value, help=f"from {','.join(PRECISIONS)}")
    grid.add_argument(
        "--batch",
        help="batch sizes (first dimension of the inputs whose first dimension is dynamic, replacing --shapes'), "
        "e.g. 1,8,32",
    )
    grid.add_argument("--workspace", dest="workspaces", help="TensorRT workspace sizes, e.g. 1G,4G")
    grid.add_argument("--opt-level", dest="opt_levels", help="TensorRT builder optimization levels, e.g. 3,5")
    p.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local worker processes (one per GPU) or Ray tasks",
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
    p.add_argument(
        "--out", help="also write the sweep's report here (DIR/report.html; it is always kept in the workspace)"
    )
    p.set_defaults(func=lambda a: cmd_sweeps(a) if a.list else cmd_sweep(a))


def _add_interop_commands(sub, output) -> None:
    """import / export / report / compare / roofline: runs made elsewhere (trtexec) in, deployable artifacts and
    reports out."""
    p = sub.add_parser(
        "import",
        help="turn trtexec outputs (files or folders, recognised by content) into a run",
        parents=[output],
    )
    p.add_argument(
        "paths",
        nargs="+",
        help="--exportLayerInfo/--exportProfile/--exportTimes JSON, trtexec logs, TREx metadata, or folders of them",
    )
    p.add_argument("--out", help="also write the run directory here (it is always kept in the history)")
    p.add_argument("--plan", help="the engine file (kept with the run, for Triton export)")
    p.add_argument("--name", help="a name for the run")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "export", help="export a run: its trtexec command, or a Triton model repository", parents=[output]
    )
    export = p.add_subparsers(dest="target", required=True)
    t = export.add_parser("trtexec", help="print the equivalent trtexec command line", parents=[output])
    t.add_argument("run", help="run directory or run id")
    t.add_argument("--version", type=int, default=11, choices=(10, 11), help="TensorRT major version")
    t.set_defaults(func=cmd_export_trtexec)
    t = export.add_parser(
        "triton", help="write <REPO>/<name>/1/model.plan|model.onnx and config.pbtxt", parents=[output]
    )
    t.add_argument("run", help="run directory or run id")
    t.add_argument("--out", required=True, help="Triton model repository folder")
    t.add_argument("--name", help="model name (default: the run's model name)")
    t.add_argument("--max-batch-size", type=int, help="default: the profile's max batch (0 for a fixed batch)")
    t.add_argument("--plan", help="engine file, for imported runs that do not carry one")
    t.add_argument("--instances", type=int, default=1, help="instances per device")
    t.add_argument("--kind", default="gpu", choices=("gpu", "cpu"), help="instance kind")
    t.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic batching off")
    t.set_defaults(func=cmd_export_triton)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run", parents=[output])
    p.add_argument("run", help="run directory or run id")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare", help="compare runs (the first is the baseline); optional HTML report", parents=[output]
    )
    p.add_argument("runs", nargs="+", help="two or more run directories or run ids")
    p.add_argument("--out", help="HTML file to write")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="time the runs' variants again, alternately in one session (a fair A/B under the same load)",
    )
    p.add_argument("--rounds", type=int, help="trials per variant with --interleave (default: at least 5)")
    p.add_argument("--wide", action="store_true", help="every run and column, however wide the terminal")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "roofline",
        help="each layer against the hardware limit (FLOPs, bytes, %% of the roofline) and the model's lower bound",
        parents=[output],
    )
    p.add_argument("run", help="run directory or run id")
    p.add_argument("--device", help="GPU name (default: the run's; 'cpu' = this CPU, measured)")
    p.add_argument("--model", help="the ONNX model, when the run's own file is elsewhere (imported runs)")
    p.add_argument("--out", help="also write the roofline: .html page or .csv table")
    p.add_argument("--top", type=int, default=15, help="layers to list by time above the limit")
    p.add_argument("--remeasure", action="store_true", help="measure this CPU's peak again (CPU runs; cached)")
    p.set_defaults(func=cmd_roofline)


def cmd_serve(args) -> int:
    """Serve a run through Triton on 127.0.0.1: until Ctrl-C, or load-test it (--load), or search its serving
    configuration (--search). Every server started here is stopped before the command returns."""
    from .serving import serve
    from .serving.load import parse_concurrency, perf_analyzer_available

    run = _load(args.run)
    levels = parse_concurrency(args.concurrency)
    if args.search:
        from .results.store import Store
        from .serving.search import candidate_configs, search_serving
        from .views.charts import serving_latency_throughput

        configs = candidate_configs(
            parse_concurrency(args.max_batch_sizes), _int_list(args.queue_delays_us), parse_concurrency(args.instances)
        )
        found = search_serving(
            run, p99_ms=args.p99_ms, repository=args.out, configs=configs, concurrency=levels,
            duration_s=args.duration, protocol=args.protocol, triton=args.triton,
        )  # fmt: skip
        store = Store()
        for result in found.runs:
            print()
            _print_served(store.add(result))
        print(f"\n{found.summary()}")
        if found.config_path is not None:
            print(f"winner's config.pbtxt: {found.config_path}")
        if args.chart:
            from .paths import atomic_write

            atomic_write(args.chart, serving_latency_throughput(found.runs, args.p99_ms).to_html(include_plotlyjs=True))
            print(f"chart: {args.chart}")
        return 0 if found.winner is not None else 1
    options = {
        "repository": args.out, "max_batch_size": args.max_batch_size, "dynamic_batching": not args.no_dynamic_batching,
        "preferred_batch_sizes": parse_concurrency(args.preferred_batch_sizes) if args.preferred_batch_sizes else (),
        "max_queue_delay_us": args.max_queue_delay_us, "instances": args.instances_count, "triton": args.triton,
        "timeout_s": args.timeout,
    }  # fmt: skip
    with serve(run, **options) as served:
        print(f"READY: model '{served.model}' ({served.config.label}; {served.engine})", flush=True)
        print(f"  http {served.server.http_url}  grpc {served.server.grpc_url}  metrics {served.server.metrics_url}")
        if args.generator == "tritonclient" and perf_analyzer_available():
            print("perf_analyzer is on PATH: --generator perf_analyzer load-tests with it (its CSV is imported)")
        if not args.load:
            print("Serving until Ctrl-C.", flush=True)
            while served.server.running:
                served.server.process.wait()
            raise WorkbenchError(f"tritonserver exited on its own: {served.server.log_tail(3) or 'no log'}")
        result = served.load(levels, duration_s=args.duration, protocol=args.protocol, generator=args.generator)
    from .results.store import Store

    stored = _print_served(Store().add(result))
    return 0 if stored.serving.counts_agree or args.generator != "tritonclient" else 1


def _print_served(run):
    """A stored serving run: its name and id, then what served it and each level."""
    from .serving import serving_lines

    print(f"{run.name}  [{run.id}]")
    print("\n".join(f"  {line}" for line in serving_lines(run)))
    return run


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise WorkbenchError(f"'{text}' is not a list of integers: pass e.g. 0,500.") from None


def _add_serve_command(sub, output) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a run through a real Triton on 127.0.0.1; --load: load test; --search: best serving config",
        parents=[output],
    )
    p.add_argument("run", help="run directory or run id")
    p.add_argument("--load", action="store_true", help="load-test it at each --concurrency, then stop")
    p.add_argument("--search", action="store_true", help="search max batch, dynamic batching and instances")
    p.add_argument("--concurrency", default="1,2,4,8,16", help="requests in flight, per level (default 1,2,4,8,16)")
    p.add_argument(
        "--duration", type=float, default=10.0, help="seconds per level at most (ends sooner when p99 is stable)"
    )
    p.add_argument("--protocol", default="grpc", choices=("grpc", "http"), help="the load generator's protocol")
    p.add_argument("--generator", default="tritonclient", choices=("tritonclient", "perf_analyzer"),
                   help="perf_analyzer: NVIDIA's, where it is on PATH (NGC); its CSV is imported")  # fmt: skip
    p.add_argument("--out", help="Triton model repository to export into (kept; the search writes its winner there)")
    p.add_argument("--triton", default="auto", choices=("auto", "path", "wheel"),
                   help="which tritonserver: NGC's on PATH, or the nvidia-pytriton wheel's")  # fmt: skip
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for READY")
    g = p.add_argument_group("one configuration (serve, --load)")
    g.add_argument("--max-batch-size", type=int, help="default: the run's (see export triton)")
    g.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic batching off")
    g.add_argument("--preferred-batch-sizes", help="e.g. 4,8")
    g.add_argument("--max-queue-delay-us", type=int, default=0, help="dynamic batching's max queue delay")
    g.add_argument("--instances", dest="instances_count", type=int, default=1, help="model instances")
    g = p.add_argument_group("the search (--search)")
    g.add_argument("--p99-ms", type=float, default=10.0, help="p99 latency budget in ms (default 10)")
    g.add_argument("--max-batch-sizes", default="8", help="max batch sizes to try (default 8)")
    g.add_argument("--queue-delays-us", default="0,500", help="max queue delays to try, µs (default 0,500)")
    g.add_argument("--search-instances", dest="instances", default="1,2", help="instance counts to try (default 1,2)")
    g.add_argument("--chart", help="write the latency-throughput chart (with the Pareto front) to this .html")
    p.set_defaults(func=cmd_serve)


def cmd_samples(args) -> int:
    from .model.samples import SAMPLES

    _print_rows([(name, str(path)) for name, path in SAMPLES.items()])
    print("\nPass a name wherever a model or data file is asked for, e.g. 'workbench info resnet_mini'.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``workbench`` parser. Options several subcommands take are defined once, in an option group that also
    reads them back (:class:`_Options`: ``_Timing``, ``_Calibration``...); a new shared option goes into its group."""
    from .backends import NAMES

    parser = _Parser(prog=PROG, description="TensorRT optimization workbench", parents=[_output_options(False)])
    output = _output_options()
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    auto_backends = _Backend(
        ("auto", *NAMES), "auto", "auto: TensorRT where it builds and a GPU is present, else ONNX Runtime"
    )
    _add_model_commands(sub, output, auto_backends)
    _add_interop_commands(sub, output)
    _add_sweep_command(sub, output, auto_backends)
    _add_serve_command(sub, output)

    p = sub.add_parser(
        "history",
        help="list the runs kept in the workspace (WORKBENCH_WORKSPACE, default: the "
        "checkout's workspace/, shared with the notebooks)",
        parents=[output],
    )
    p.add_argument("--model", help="only runs of this model (name or sha256)")
    p.add_argument("--wide", action="store_true", help="every column, however wide the terminal")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "reindex", help="list run folders the history is missing; --rebuild a damaged history", parents=[output]
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="move a damaged or foreign runs.sqlite aside and rebuild it from the run folders",
    )
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("doctor", help="what is installed and what can run here, and why not", parents=[output])
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "samples", help="the bundled sample models and data, usable by name in every command", parents=[output]
    )
    p.set_defaults(func=cmd_samples)
    return parser


def _parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args``, its usage errors shortened: argparse quotes a bad value whole (a 100,000-character
    --precision would come back as a 100 KB line)."""
    import io

    from .errors import MAX_MESSAGE, shorten

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(argv)
    finally:
        for line in captured.getvalue().splitlines():  # usage lines keep their indent; only a long one is cut
            print(line if len(line) <= MAX_MESSAGE else shorten(line, MAX_MESSAGE), file=sys.stderr)


def main(argv=None) -> int:
    args = _parse(build_parser(), argv)
    debug = args.debug or os.environ.get("WORKBENCH_DEBUG", "") not in ("", "0")
    if args.verbose:  # every record from INFO up, every warning every time, as Python shows them
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        args.console = None
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            return _run(args, debug)
    from .messages import console

    # each message once, as one line on stderr; the notes too, unless -q (then the run's notes close its output)
    with console(notes=not getattr(args, "quiet", False)) as args.console:
        return _run(args, debug)


def _run(args, debug: bool) -> int:
    try:
        if getattr(args, "max_memory", None):
            from .memory import parse_max_memory

            os.environ["WORKBENCH_MAX_MEMORY"] = str(parse_max_memory(args.max_memory))
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
    except MemoryError:  # an allocation no estimate foresaw (a library's copy): the machine's limit, not a bug
        from .memory import memory_error

        print(f"error: {memory_error('This command', 'give smaller shapes or fewer samples')}", file=sys.stderr)
        return 2
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
