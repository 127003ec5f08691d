"""One call for the whole flow: ONNX file → Model → Variant → Engine → Run (+ accuracy, run directory, report).

The CLI, the widgets and the notebooks all go through :func:`profile`.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from .analysis.checks import checked
from .backends import choose_backend
from .config import BackendName, BuildConfig, Precision, check_number
from .env import host_peak_bytes
from .errors import WorkbenchError
from .format import fold_messages
from .model.inputs import (
    batch_inputs,
    check_inputs,
    chunk_size,
    first_samples,
    defaulted_shapes_note,
    evaluation_inputs,
    input_values_note,
    load_inputs,
    make_inputs,
    read_arrays,
    resolve_shapes,
)
from .precision.calibration import fixed_batch, held_calibration_note
from .model.onnx_model import load_model
from .precision.accuracy import INCONCLUSIVE, Tolerance, measure_accuracy
from .precision.variant import make_variant
from .messages import collected
from .progress import Progress, ensure
from .results.run import Accuracy, Run
from .views.report import write_report

log = logging.getLogger(__name__)

#: Shown wherever a run made with random calibration data appears.
RANDOM_CALIBRATION_NOTE = "INT8/FP8 scales from RANDOM calibration data: accuracy figures do not represent real data"
#: Accuracy without evaluation data: the first this many calibration samples, else this many seeded random samples.
ACCURACY_SAMPLES = 32


def profile(
    model,
    precision: str | None = None,
    *,
    backend: str = "auto",
    config: BuildConfig | None = None,
    inputs=None,
    eval_data=None,
    labels=None,
    out=None,
    progress: Progress | None = None,
    tolerance=None,
    recipe=None,
    input_ranges=None,
    **variant_options,
) -> Run:
    """Build and profile ``model`` at ``precision`` on ``backend`` and return the Run.

    ``inputs`` (arrays / .npz) are what is timed (default: seeded random data shaped by ``config.shapes``).
    ``eval_data`` (arrays / .npz, optionally with a ``labels`` key) is what accuracy is measured on; without it,
    on the first :data:`ACCURACY_SAMPLES` calibration samples (when the variant was calibrated on given data),
    else on :data:`ACCURACY_SAMPLES` seeded random samples at the profiled shapes; ``Accuracy.data`` says which.
    ``tolerance`` (:class:`workbench.precision.accuracy.Tolerance`, a dict or ``"name=value,..."``) sets the bounds
    of the accuracy verdict ("ok" / "degraded" / "broken"). A dynamic input without a shape in ``config.shapes``
    is profiled at a default size and the run carries a note saying so. ``variant_options`` go to
    :func:`workbench.precision.variant.make_variant` (``calibration=``, ``random_calibration=``, ``calibration_method=``...).
    With ``out`` the run directory and its ``report.html`` are written there. ``recipe`` (a recipe dict or
    ``recipe.json`` from :func:`sensitivity`) sets the precision and keeps its nodes in higher precision.
    ``input_ranges`` (``{name: "lo..hi"}``, ``(lo, hi)`` or :class:`workbench.model.inputs.ValueRange`; the CLI's
    ``--input-range``) sets the values of generated inputs where the graph's own ranges
    (:func:`workbench.model.inputs.input_value_ranges`) are not what the model needs; the run's notes say which
    values each input got. FP16/BF16 variants run AutoCast's reference on the same inputs.
    """
    progress = ensure(progress)
    peak_before = host_peak_bytes()
    model, config, variant_options = _settle(model, precision, config, recipe, variant_options)
    chosen, why = choose_backend(backend)
    backend_note = f"backend chosen: {why}"
    log.info(backend_note)
    can, reason = chosen.precision_support()[config.precision]
    if not can:  # before the (slow) precision transform, not after it
        raise WorkbenchError(f"Precision {config.precision} cannot run on {chosen.name} here: {reason}.")

    tolerance = Tolerance.parse(tolerance)  # a bad tolerance fails before the (slow) build
    shapes_note = defaulted_shapes_note(model, config.shape_map) if inputs is None else ""
    if shapes_note:
        log.warning(shapes_note)
    if inputs is None and chosen.name == "onnxruntime" and not Precision(config.precision).autocast:
        # before seconds of drawing inputs that could not run anyway (a 16-bit variant's tensors are smaller:
        # it is checked once it exists)
        from .backends.onnxruntime import check_session_memory

        check_session_memory(model, config.precision, resolve_shapes(model, config.shapes))
    with collected() as said:  # what the steps said (calibration's size, say) joins the run's notes
        variant_options = _calibration_read(model, config, variant_options)
        calibration_source = variant_options.get("calibration")
        feed, generated = _feed(model, inputs, config, input_ranges)
        variant = _variant(model, config, variant_options, feed, input_ranges, progress)
        progress.check()
        with chosen.build(variant, config, progress) as engine:  # its session / device memory go when it ends
            run = chosen.profile(engine, feed, config, progress)
            accuracy = _accuracy(
                variant, engine, config, feed, eval_data, labels, calibration_source, tolerance, input_ranges
            )
    memory, peak_note = _host_peak(run.memory, peak_before)
    notes = list(run.notes) + [backend_note] + said + ([peak_note] if peak_note else [])
    notes[:0] = variant_notes(variant)
    if generated:
        notes.insert(0, input_values_note(model, input_ranges, given=set(feed) - set(generated)))
    if shapes_note:
        notes.insert(0, shapes_note)
    if variant.random_calibration:
        notes.insert(0, RANDOM_CALIBRATION_NOTE)
    if accuracy is not None and accuracy.verdict in ("broken", "degraded", INCONCLUSIVE):
        notes.insert(0, f"accuracy {accuracy.verdict.upper()}: {accuracy.verdict_reason}")
    run = run.replace(
        accuracy=accuracy,
        memory=memory,
        notes=tuple(fold_messages(notes, similar=False)),
        profiled_shapes=run.profiled_shapes or {k: tuple(v.shape) for k, v in feed.items()},
        name=f"{model.name} {config.precision} {chosen.name}"
        + (" (random calibration)" if variant.random_calibration else ""),
    )
    if variant.path and variant.path != model.path:
        run = run.replace(artifacts={**run.artifacts, "onnx": str(variant.path)})
    run = checked(run)  # the roofline's self-checks join the Run's own (workbench.analysis.checks)
    if out is not None:
        run = save_with_report(run, out)
    return run


def _host_peak(memory, before: int | None):
    """(``memory`` with the host peak read after the run's last step, a note or ""): the precision transform,
    calibration, build, timing and accuracy all happened by then, so the peak holds every step. A process whose
    peak was set before this run began (an earlier run in the same notebook) gets that peak and a note saying so."""
    import dataclasses

    peak = host_peak_bytes()
    if peak is None:
        return memory, ""
    note = ""
    if before is not None and peak <= before:
        note = (
            f"host peak memory {peak / 2**30:.2f} GiB was reached before this run began (an earlier step of the "
            "same process): this run's own peak is at most that"
        )
    return dataclasses.replace(memory, host_peak_bytes=peak), note


def _feed(model, inputs, config: BuildConfig, input_ranges) -> tuple[dict, list[str]]:
    """The inputs to time and the names of those generated: all without ``inputs``; else the ones ``inputs`` (a
    dict or .npz) leaves out, generated at shapes consistent with the given arrays (a .npz per input)."""
    if inputs is None:
        return make_inputs(model, config.shape_map, config.seed, ranges=input_ranges), [s.name for s in model.inputs]
    given = read_arrays(inputs, model)
    generated = [spec.name for spec in model.inputs if spec.name not in given]
    if generated:
        known = {name: array.shape for name, array in given.items() if name in {s.name for s in model.inputs}}
        made = make_inputs(model, {**config.shape_map, **known}, config.seed, ranges=input_ranges)
        given = {**given, **{name: made[name] for name in generated}}
    check_inputs(given, model)
    return given, generated


def _calibration_read(model, config, variant_options: dict) -> dict:
    """``variant_options`` with a calibration source (a path, an image folder, arrays) read and checked once: the
    variant calibrates on it and accuracy, without evaluation data, runs its first samples (a 128-image set is read,
    decoded and checked once, not twice). fp32/tf32 leave it as given: make_variant refuses it there."""
    source = variant_options.get("calibration")
    if source is None or not Precision(config.precision).in_graph:
        return variant_options
    from .precision.calibration import load_calibration

    normalization = variant_options.get("image_normalization") or "unit"
    return {**variant_options, "calibration": load_calibration(source, model, image_normalization=normalization)}


def _variant(model, config, variant_options, feed, input_ranges, progress):
    """The precision variant; AutoCast (fp16/bf16) checks its ranges on ``feed`` unless calibration data is given;
    random calibration (int8/fp8) is drawn at ``feed``'s shapes, in ``input_ranges``."""
    options = {**variant_options, "progress": variant_options.get("progress", progress)}
    precision = Precision(config.precision)
    random = precision.quantized and options.get("random_calibration")
    if precision.autocast or random:
        options.setdefault("reference_inputs", feed)
    if random and input_ranges:
        options.setdefault("input_ranges", input_ranges)
    return make_variant(model, config.precision, **options)


def _settle(model, precision, config, recipe, variant_options):
    """The loaded model, the config at the asked precision, and the variant options once a recipe is applied."""
    model = load_model(model)
    config = config or BuildConfig()
    if recipe is not None:
        from .precision.recipe import apply_recipe

        precision, variant_options = apply_recipe(recipe, model, precision or config.precision, variant_options)
    if precision is not None and precision != config.precision:
        config = config.replace(precision=precision)
    return model, config, variant_options


def compile(
    model,
    precision: str | None = None,
    *,
    backend: str = "tensorrt-rtx",
    arch: str | None = None,
    config: BuildConfig | None = None,
    out=None,
    progress: Progress | None = None,
    recipe=None,
    input_ranges=None,
    **variant_options,
) -> Run:
    """Build the real engine of ``model`` at ``precision`` for GPU architecture ``arch`` without running it.

    No GPU is needed: TensorRT-RTX builds for a named target (``sm86``, ``sm89``, ``sm120``...; default: this GPU
    when it runs TensorRT-RTX, else sm89). The Run is marked compiled, not run (``timed=False``): the engine's
    layers after fusion with their ONNX nodes, precisions and tensor formats, the memory plan, plan size, build time
    and phases — and no latency. ``config.shapes`` / ``config.profiles`` set the shapes of dynamic inputs.
    ``variant_options`` go to :func:`workbench.precision.variant.make_variant` (``calibration=`` for int8/fp8).
    With ``out`` the run directory and its ``report.html`` are written there. ``recipe`` and ``input_ranges`` (the
    values of the inputs AutoCast's reference run gets, for fp16/bf16): as in :func:`profile`.
    """
    from .backends import get_backend

    progress = ensure(progress)
    model, config, variant_options = _settle(model, precision, config, recipe, variant_options)
    chosen = get_backend(backend)
    ok, reason = chosen.can_compile()
    if not ok:
        raise WorkbenchError(f"{chosen.name} cannot compile here: {reason}")
    if arch is not None and backend != "tensorrt-rtx":
        raise WorkbenchError(f"--arch {arch} names a GPU architecture for TensorRT-RTX: drop it for {chosen.name}.")
    if arch is not None:  # refuse an unknown target or a precision it lacks before the precision transform
        can, why = chosen.precision_support(arch)[config.precision]
        if not can:
            raise WorkbenchError(f"Precision {config.precision} cannot be compiled for {arch}: {why}.")
    autocast = Precision(config.precision).autocast
    in_graph = Precision(config.precision).in_graph
    feed = make_inputs(model, config.shape_map, config.seed, ranges=input_ranges) if in_graph else None
    variant = _variant(model, config, variant_options, feed, input_ranges, progress)
    progress.check()
    run = chosen.compile(variant, config, progress, arch=arch)
    if autocast and "calibration" not in variant_options:
        run = run.replace(notes=(*run.notes, f"AutoCast reference run on {input_values_note(model, input_ranges)}"))
    run = run.replace(notes=(*variant_notes(variant), *run.notes))
    if variant.random_calibration:
        run = run.replace(notes=(RANDOM_CALIBRATION_NOTE, *run.notes))
    if variant.path and variant.path != model.path:
        run = run.replace(artifacts={**run.artifacts, "onnx": str(variant.path)})
    if out is not None:
        run = save_with_report(run, out)
    return run


def save_with_report(run: Run, out) -> Run:
    """Write the run directory and its self-contained ``report.html``."""
    # written in the run folder before it is renamed into place: the folder appears complete or not at all
    return run.save(out, finish=lambda saved: write_report(saved, saved.directory / "report.html"))


def calibration_note(variant) -> str:
    """How a quantized variant's scales were calibrated: the method, the samples and how many per step."""
    samples = variant.calibration.get("samples")
    batch = variant.options.get("calibration_batch") or 1
    what = f" on {samples} sample{'s' if samples != 1 else ''}, {batch} per step" if samples else ""
    return f"{variant.precision} scales: {variant.calibration_method} calibration{what} (ModelOpt ONNX PTQ)"


def variant_notes(variant) -> list[str]:
    """What the precision transform did that a reader of the run must know: repairs made to the copy converted,
    a calibration method fallen back on, ai.onnx.ml operators or control flow kept out, nothing quantized at all,
    the calibration method a quantized variant's scales came from, calibration inputs held whole."""
    notes = [
        variant.changes[key]
        for key in ("repaired", "calibration_fallback", "ml_kept", "control_flow_fp32", "nothing_quantized")
        if variant.changes.get(key)
    ]
    if variant.calibration_method:
        notes.append(calibration_note(variant))
    if variant.calibration.get("held"):
        notes.append(held_calibration_note(variant.calibration))
    return notes


def _accuracy(
    variant, engine, config, feed, eval_data, labels, calibration_source, tolerance, input_ranges
) -> Accuracy | None:
    """Accuracy against FP32 whenever the graph or the math changed, or labels make it meaningful.

    On the evaluation data when given, else on the first :data:`ACCURACY_SAMPLES` calibration samples, else on
    :data:`ACCURACY_SAMPLES` seeded random samples at the profiled shapes (one sample can hide a collapse)."""
    if variant.precision == Precision.FP32 and eval_data is None and labels is None:
        return None
    if eval_data is not None:  # the model's inputs plus an optional 'labels' array (.npz key or dict key)
        data = read_arrays(eval_data, variant.source, what="Evaluation input")
        labels = data.pop("labels", labels)
        check_inputs(data, variant.source, what="Evaluation input", batch_free=True)
        described = f"evaluation data ({_count(data, variant.source)} samples)"
    elif calibration_source is not None and not variant.random_calibration:
        from .precision.calibration import load_calibration

        calibration = load_calibration(calibration_source, variant.source)
        count = min(calibration.samples, ACCURACY_SAMPLES)
        if count % (fixed_batch(variant.source) or 1):
            count = calibration.samples
        data = {k: v if k in calibration.held else v[:count] for k, v in calibration.arrays.items()}
        described = (
            f"calibration data (the first {count} of {calibration.samples} samples, the data the scales "
            "came from: give --eval data for an independent check)"
        )
    else:
        shapes = {k: v.shape for k, v in feed.items()}  # the profiled shapes
        data = evaluation_inputs(variant.source, shapes, ACCURACY_SAMPLES, config.seed, ranges=input_ranges)
        described = (
            f"{_count(data, variant.source)} seeded random samples (seed {config.seed}) at the profiled shapes: give "
            "--eval data for real inputs"
        )
    carried = batch_inputs(variant.source)
    batch = next((feed[n].shape[0] for n in carried if feed[n].ndim), None)
    held = len(carried) < len(variant.source.inputs)  # held inputs fit the profiled batch only
    kwargs = {"labels": labels, "tolerance": tolerance, "data": described, "batch_size": batch if held else None}
    if engine.backend == BackendName.ONNXRUNTIME:  # measure_accuracy runs the variant on ONNX Runtime itself
        level = engine.info.get("graph_optimization") or config.ort_graph_optimization  # the level the profile ran
        # in chunks of the profiled batch: the variant's session then runs the shapes its profile ran (the crash
        # probe has passed on them: no child runs a 32-sample chunk of a slow Q/DQ graph again), and the tensors
        # held at once stay those of the profiled batch
        return measure_accuracy(variant, data, graph_optimization=level, **{**kwargs, "batch_size": batch})
    return measure_accuracy(variant, data, infer=engine.infer, backend=engine.backend, **kwargs)


def _count(arrays: dict, model) -> int:
    """Samples in ``arrays``: the first axis of an input that carries the batch."""
    return next((arrays[n].shape[0] for n in batch_inputs(model) if n in arrays and arrays[n].ndim), 1)


def sensitivity(
    model,
    precision: str = "int8",
    *,
    eval_data=None,
    labels=None,
    budget=None,
    calibration=None,
    group_by: str = "block",
    scope_depth: int = 3,
    max_minutes: float | None = None,
    out=None,
    max_samples: int = 512,
    backend: str = "auto",
    compile_arch: str | None = None,
    store=None,
    progress: Progress | None = None,
    **variant_options,
):
    """Which nodes lose accuracy at ``precision``, and the fewest to keep in higher precision to meet ``budget``.

    Runs :func:`workbench.analysis.sensitivity.search_plan` (ranking, plan, Pareto candidates, layer-wise error),
    then profiles the chosen plan and the all-``precision`` variant on ``backend`` (``auto``: TensorRT where it
    builds, else ONNX Runtime; accuracy on ``eval_data``). Returns the plan's Run, whose ``sensitivity`` field holds the search (its report shows the
    ranking, the Pareto and the plan's latency beside the all-low-precision variant). ``compile_arch``: also
    the TensorRT-RTX engine layer count and memory of every plan candidate (see
    :func:`workbench.analysis.sensitivity.search_plan`). With ``out``: ``out/plan``
    and ``out/all-<precision>`` run directories (with reports) and ``out/recipe.json``. With ``store`` (a
    :class:`workbench.results.store.Store`): the all-``precision`` run is added to it, so the id the plan's record
    names (``profiled.all_low.run``) is one the history knows (the plan run is the caller's to add).
    """
    from .analysis.sensitivity import search_plan
    from .precision.recipe import save_recipe

    deadline = time.monotonic() + 60 * max_minutes if max_minutes else None
    progress = ensure(progress)
    model = load_model(model)
    if calibration is not None:
        variant_options["calibration"] = calibration
    found = search_plan(
        model,
        precision,
        eval_data=eval_data,
        labels=labels,
        budget=budget,
        group_by=group_by,
        scope_depth=scope_depth,
        max_minutes=max_minutes,
        deadline=deadline,
        max_samples=max_samples,
        backend=backend,
        compile_arch=compile_arch,
        progress=progress,
        **variant_options,
    )
    data = load_inputs(eval_data, model, what="Evaluation input", batch_free=True)
    data_labels = data.pop("labels", labels)
    data = first_samples(model, data, found.samples)
    if data_labels is not None:
        data_labels = data_labels[: found.samples]
    timing = first_samples(model, data, chunk_size(model, data, 1))  # one inference, at the eval data's shapes
    config = BuildConfig(precision=precision)  # timed as every profile is, with BuildConfig's defaults
    if deadline is not None:  # the two profiles below fit what is left of the limit (a slow model: fewer runs)
        config = _fitted(config, deadline, found)
    common = {"backend": backend, "inputs": timing, "eval_data": data, "labels": data_labels, "progress": progress}
    planned = found.plan_precision or precision
    low = profile(model, config=config, **common, **variant_options)
    low = low.replace(name=f"{model.name} {precision} (all nodes)")
    if store is not None:
        low = store.add(low)
    plan = profile(
        model,
        recipe=found.recipe,
        config=config.replace(precision=planned),
        **common,
        **(variant_options if planned == precision else _float_options(planned, variant_options)),
    )
    kept = len(found.recipe["keep_nodes"])
    if planned == precision:
        plan = plan.replace(name=f"{model.name} {precision} plan ({kept} node{'s' if kept != 1 else ''} kept)")
    else:  # no node left in the low precision: named for what it runs in, never as an int8 plan
        plan = plan.replace(name=f"{model.name} {planned} plan (no {precision} node within the budget)")
    plan = plan.replace(
        sensitivity={**found.to_dict(), "profiled": {"all_low": _profiled(low), "plan": _profiled(plan)}}
    )
    if out is not None:
        out = Path(out)
        save_with_report(low, out / f"all-{precision}")
        recipe_path = save_recipe(found.recipe, out / "recipe.json")
        plan = save_with_report(plan.replace(artifacts={**plan.artifacts, "recipe": str(recipe_path)}), out / "plan")
    return plan


#: Rounds of an interleaved session when the runs asked for fewer: Student's t over 2 rounds is too wide to rank.
INTERLEAVE_ROUNDS = 5


def interleave(runs, *, rounds: int | None = None, progress: Progress | None = None) -> tuple[Run, ...]:
    """Time the variants of ``runs`` again, alternately in one session (round k times trial k of each, see
    :func:`workbench.backends.timing.alternate_trials`): a fair A/B, where drift and the neighbours' load fall on
    every variant alike.

    Each run's variant (its ONNX file: the run's ``onnx`` artifact, else its model) is built on the run's backend
    with the run's config and fed seeded inputs at the run's profiled shapes. ``rounds``: trials per variant
    (default: the most any run used, at least :data:`INTERLEAVE_ROUNDS`). Returns the runs with latency, trials,
    timing and conditions from this session (their layer tables stay as first profiled) and
    ``extra["interleaved"]`` naming the session, so that :func:`workbench.analysis.compare.compare` pairs them
    round by round."""
    from .backends import get_backend
    from .backends.onnxruntime import session_runner
    from .backends.timing import alternate_trials, timed_loop, warm_up
    from .model.inputs import make_inputs
    from .precision.variant import Variant
    from .results.run import new_run_id

    progress = ensure(progress)
    runs = tuple(runs)
    if len(runs) < 2:
        raise WorkbenchError(f"Interleaving needs at least two runs (got {len(runs)}): pick the runs to compare.")
    if rounds is not None:
        rounds = check_number(rounds, 2, 1_000, "rounds (trials per variant)", integer=True)
    rounds = rounds or max(INTERLEAVE_ROUNDS, *(r.config.trials for r in runs))
    engines, timers, gpus = [], [], []
    try:
        for run in runs:
            source = run.artifact("onnx") or (Path(run.model["path"]) if run.model.get("path") else None)
            if source is None or not Path(source).is_file():
                raise WorkbenchError(
                    f"Run {run.id} ({run.name}) has no model file to time again ({source or 'none recorded'}): "
                    "profile the variant again, then compare the new runs."
                )
            model = load_model(source)
            config = run.config.replace(trials=rounds)
            variant = Variant(
                model=model, source=model, precision=run.precision, changes=run.variant.get("changes", {})
            )
            backend = get_backend(run.backend)
            engine = backend.build(variant, config, progress)
            engines.append(engine)
            feed = make_inputs(model, run.shapes or config.shape_map)
            if run.backend == "onnxruntime":
                once, gpu = session_runner(engine.handle, feed)
            elif engine.infer is not None:
                once, gpu = functools.partial(engine.infer, feed), None
            else:
                raise WorkbenchError(
                    f"The {run.backend} backend has no inference call to interleave ({run.name}): compare its "
                    "runs as profiled."
                )
            gpus.append(gpu)
            warm = functools.partial(warm_up, once, config.warmup_ms)
            timers.append((warm, functools.partial(timed_loop, once, config, progress)))  # a trial, given its label
        session = new_run_id()
        timed = alternate_trials(timers, runs[0].config.replace(trials=rounds), progress, gpus[0])
    finally:
        for engine in engines:
            engine.close()
    tags = "".join(chr(ord("A") + i) for i in range(min(len(runs), 26)))
    note = (
        f"timed again alternately with {len(runs) - 1} other variant(s) in one session ({rounds} rounds, "
        f"{'/'.join(tags)}…): latency and timing are this session's, the layer table is the first profile's"
    )
    through_infer = " (timed through the engine's inference call: host-device copies included)"
    return tuple(
        run.replace(
            id=new_run_id(),
            latency=t.latency(run.latency.batch if run.latency else 1),
            latency_ms=t.times_ms,
            trials=t.trials,
            timing=t.timing(run.timing.profiled_ms if run.timing else None),
            conditions=t.conditions,
            notes=(*run.notes, note + ("" if run.backend == "onnxruntime" else through_infer)),
            extra={**run.extra, "interleaved": session, "interleaved_from": run.id},
            directory=None,
        )
        for run, t in zip(runs, timed)
    )


#: Variant options that only quantization (int8/fp8) takes: a plan with no Q/DQ pair left is profiled without them.
_QUANTIZE_ONLY = (
    "random_calibration calibration_method calibration_batch high_precision_dtype exclude_nodes exclude_op_types"
).split()
#: Timed runs per trial of a profile cut to fit a time limit, at least.
MIN_FITTED_ITERATIONS = 5


def _float_options(precision: str, options: dict) -> dict:
    """``options`` an fp16/bf16 (AutoCast) or fp32 variant takes: quantization's own dropped."""
    if precision in ("fp32", "tf32"):
        return {k: v for k, v in options.items() if k == "cache_dir"}
    return {k: v for k, v in options.items() if k not in _QUANTIZE_ONLY}


def _fitted(config: BuildConfig, deadline: float, found) -> BuildConfig:
    """``config`` with as many timed runs per trial as let two profiles (their trials and per-layer pass) end by
    ``deadline``, at the slowest latency the search measured; at least :data:`MIN_FITTED_ITERATIONS`."""
    measured = [found.reference.get("latency_ms"), *(c.get("latency_ms") for c in found.candidates)]
    slowest_s = max((m for m in measured if m), default=0.0) / 1000
    if not slowest_s:
        return config
    left = max(0.0, deadline - time.monotonic())
    fits = int(left / 2 / (config.trials + 1) / slowest_s)
    return config.replace(iterations=max(MIN_FITTED_ITERATIONS, min(config.most_iterations, fits)), warmup_ms=50.0)


def _profiled(run: Run) -> dict:
    """What the report shows of a profiled variant beside the plan: latency and accuracy, as measured."""
    acc = run.accuracy
    return {
        "name": run.name,
        "run": run.id,
        "backend": str(run.backend),
        "p50_ms": run.latency.p50_ms if run.latency else None,
        "mean_ms": run.latency.mean_ms if run.latency else None,
        "label_accuracy": acc.label_accuracy if acc else None,
        "cosine": min((o.cosine for o in acc.outputs), default=None) if acc else None,
    }
