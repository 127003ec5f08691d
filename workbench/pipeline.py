"""One call for the whole flow: ONNX file → Model → Variant → Engine → Run (+ accuracy, run directory, report).

The CLI, the widgets and the notebooks all go through :func:`profile`.
"""

from __future__ import annotations

from pathlib import Path

from .backends import choose_backend
from .config import BackendName, BuildConfig, Precision
from .errors import WorkbenchError
from .model.inputs import load_inputs, make_inputs
from .model.onnx_model import load_model
from .precision.variant import make_variant
from .progress import Progress, ensure
from .results.run import Accuracy, Run

#: Shown wherever a run made with random calibration data appears.
RANDOM_CALIBRATION_NOTE = "INT8/FP8 scales from RANDOM calibration data: accuracy figures do not represent real data"


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
    **variant_options,
) -> Run:
    """Build and profile ``model`` at ``precision`` on ``backend`` and return the Run.

    ``inputs`` (arrays / .npz) are what is timed (default: seeded random data shaped by ``config.shapes``).
    ``eval_data`` (arrays / .npz, optionally with a ``labels`` key) is what accuracy is measured on; without it,
    accuracy against FP32 is measured on the profiling inputs. ``variant_options`` go to
    :func:`workbench.precision.variant.make_variant` (``calibration=``, ``random_calibration=``, ``calibration_method=``...).
    With ``out`` the run directory and its ``report.html`` are written there.
    """
    progress = ensure(progress)
    model = load_model(model)
    config = config or BuildConfig()
    if precision is not None and precision != config.precision:
        config = config.replace(precision=precision)
    chosen, why = choose_backend(backend)
    progress.step(f"Backend: {why}", 0, 0)
    can, reason = chosen.precision_support()[config.precision]
    if not can:  # before the (slow) precision transform, not after it
        raise WorkbenchError(f"Precision {config.precision} cannot run on {chosen.name} here: {reason}.")

    variant_options.setdefault("progress", progress)
    variant = make_variant(model, config.precision, **variant_options)
    progress.check()
    feed = load_inputs(inputs, model) if inputs is not None else make_inputs(model, config.shape_map, config.seed)
    with chosen.build(variant, config, progress) as engine:  # its session / device memory go when the block ends
        run = chosen.profile(engine, feed, config, progress)
        accuracy = _accuracy(variant, engine, feed, eval_data, labels)
    notes = list(run.notes) + [f"backend chosen: {why}"]
    if variant.random_calibration:
        notes.insert(0, RANDOM_CALIBRATION_NOTE)
    run = run.replace(accuracy=accuracy, notes=tuple(notes),
                      name=f"{model.name} {config.precision} {chosen.name}"
                      + (" (random calibration)" if variant.random_calibration else ""))
    if variant.path and variant.path != model.path:
        run = run.replace(artifacts={**run.artifacts, "onnx": str(variant.path)})
    if out is not None:
        run = save_with_report(run, out)
    return run


def save_with_report(run: Run, out) -> Run:
    """Write the run directory and its self-contained ``report.html``."""
    from .views.report import write_report

    saved = run.save(out)
    write_report(saved, Path(out) / "report.html")
    return saved


def _accuracy(variant, engine, feed, eval_data, labels) -> Accuracy | None:
    """Accuracy against FP32 whenever the graph or the math changed, or labels make it meaningful."""
    if variant.precision == Precision.FP32 and eval_data is None and labels is None:
        return None
    from .precision.accuracy import measure_accuracy

    data = feed
    if eval_data is not None:  # the model's inputs plus an optional 'labels' array (.npz key or dict key)
        data = load_inputs(eval_data, variant.source, what="Evaluation input", batch_free=True)
        labels = data.pop("labels", labels)
    if engine.backend == BackendName.ONNXRUNTIME:  # measure_accuracy runs the variant on ONNX Runtime itself
        return measure_accuracy(variant, data, labels=labels)
    return measure_accuracy(variant, data, labels=labels, infer=engine.infer, backend=engine.backend)

