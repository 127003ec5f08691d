"""The workbench panel: pick a model and settings, build and profile, read the results, browse and compare runs.

Everything here goes through the public API (:func:`workbench.pipeline.profile`, :class:`workbench.results.store.Store`,
:mod:`workbench.views.charts`, :mod:`workbench.analysis.compare`, :mod:`workbench.views.report`); the widgets only collect settings and
show results, so a script or a test can do what a click does (:meth:`Workbench.build`, :meth:`Workbench.compare`).
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from concurrent.futures import Future
from pathlib import Path

import ipywidgets as widgets

from ..model import samples
from ..config import (
    AUTO_ITERATIONS,
    AUTO_TRIAL_S,
    LIMITS,
    MAX_TIMED_INFERENCES,
    PRECISIONS,
    BackendName,
    BuildConfig,
    Precision,
    ShapeRange,
    format_shape,
    parse_shapes,
)
from ..errors import Cancelled, WorkbenchError
from ..format import human_bytes
from ..views.formatting_html import metrics_html, model_html
from ..model.onnx_model import Model, load_model
from ..paths import atomic_write
from ..progress import Progress
from .history import ComparePanel, HistoryPanel
from .parts import (
    FIELD,
    TABS_STYLE,
    BuildLog,
    LayerTable,
    PrecisionPicker,
    error_html,
    error_text,
    show_figures,
    titled_tabs,
)
from .sensitivity import SensitivityTab
from .serve import ServeTab
from .sweep import SweepPanel

OTHER_FILE = "other"
#: Calibration choices for int8/fp8 (the digits sample adds its own calibration set).
CALIB_SAMPLE, CALIB_RANDOM, CALIB_FILE = "sample", "random", "file"
#: Samples that ship labelled data: model -> (calibration set, its description, labelled test set).
SAMPLE_DATA = {
    "digits_cnn": ("digits_calib", "digits calibration set (256 training images)", "digits_test"),
    "outlier_digits": (
        "outlier_digits_calib",
        "outlier_digits calibration set (128 training images)",
        "outlier_digits_test",
    ),
}
#: Progress and log updates from a build are sent at most this often (a timed loop reports every inference).
UPDATE_INTERVAL_S = 0.1
_MIB = 1 << 20


def _sample_models() -> dict[str, Path]:
    return {name: path for name, path in samples.SAMPLES.items() if path.suffix == ".onnx"}


def _most_iterations(trials: int) -> int:
    """The most timed runs per trial that ``trials`` trials may take: a run keeps at most MAX_TIMED_INFERENCES
    times in all (BuildConfig refuses more), and no more than its iterations limit per trial."""
    return max(1, min(LIMITS["iterations"][1], MAX_TIMED_INFERENCES // max(1, trials)))


def _hint(text: str) -> str:
    """A grey note under a setting (``text`` is HTML, escaped by the caller)."""
    return f"<div style='color:#666;font-size:.9em;line-height:1.3'>{text}</div>"


def _input_row(label: str, *fields) -> widgets.HBox:
    """An input's name (wrapped: a Label cuts a long name or shape short) beside its fields."""
    text = f"<div style='white-space:normal;line-height:1.3'>{html.escape(label)}</div>"
    return widgets.HBox([widgets.HTML(text, layout={"width": "25%"}), *fields])


def workspace_choices(device_bytes: int | None) -> list[tuple[str, int]]:
    """Workspace sizes for the slider in bytes: 0 = TensorRT's default (all device memory), then 16 MiB doubling
    up to the device memory (64 GiB where the device memory is not known)."""
    cap = device_bytes or 64 << 30
    sizes, size = [], 16 * _MIB
    while size <= cap:
        sizes.append((human_bytes(size), size))
        size *= 2
    return [("default", 0)] + sizes


class Workbench:
    """One panel: model, precision, workspace, optimization level, shapes, calibration, backend; Build & profile
    with progress and Cancel; result tabs; History and Compare over the experiment store.

    ``model``: a sample name (``"digits_cnn"``), a path, a :class:`~workbench.model.onnx_model.Model` or None (the digits
    sample). ``store``: a :class:`~workbench.results.store.Store` (default: the workspace folder).
    """

    def __init__(self, model=None, *, store=None, backend: str = "auto"):
        from ..backends import backend_status, choose_backend, get_backend
        from ..backends.tensorrt.rtx import ARCHITECTURES, DEFAULT_ARCH
        from ..env import device_memory_bytes
        from ..results.store import Store

        self.store = store if store is not None else Store()
        self.model: Model | None = None
        self.run = None  # the Run shown in the result tabs
        self._progress: Progress | None = None
        self._future: Future | None = None
        self._last_update = 0.0
        self._phase = ""

        # ---- model ----
        choices = [(f"{name} (sample)", name) for name in _sample_models()] + [("other file…", OTHER_FILE)]
        self.model_picker = widgets.Dropdown(options=choices, description="Model", **FIELD)
        self.model_path = widgets.Text(
            placeholder="path/to/model.onnx (Enter to load)", description="Path", continuous_update=False, **FIELD
        )
        self.model_upload = widgets.FileUpload(accept=".onnx", multiple=False, description="Upload .onnx")
        self.model_summary = widgets.HTML()

        # ---- backend ----
        status = backend_status()
        self._auto_backend, why = choose_backend("auto")
        #: backends that cannot run here but can build engines without running them (TensorRT-RTX without a GPU)
        self._compile_only = {
            name: reason for name, (ok, reason) in status.items() if not ok and get_backend(name).can_compile()[0]
        }
        if backend != "auto" and backend not in self._compile_only:
            choose_backend(backend)  # an unknown or unavailable backend raises with its reason
        self.backend = widgets.Dropdown(
            options=[(f"auto ({self._auto_backend.name})", "auto")]
            + [(n, n) for n, (ok, _) in status.items() if ok]
            + [(f"{n} (compile only)", n) for n in self._compile_only],
            value=backend,
            description="Backend",
            **FIELD,
        )
        self.arch = widgets.Dropdown(
            options=list(ARCHITECTURES),
            value=DEFAULT_ARCH,
            description="Target GPU",
            tooltip="the GPU architecture TensorRT-RTX builds for",
            **FIELD,
        )
        self.compile_note = widgets.HTML()
        unavailable = [
            f"{name}: {reason}"
            for name, (ok, reason) in status.items()
            if not ok and reason not in why and name not in self._compile_only
        ]
        self.backend_note = widgets.HTML(_hint("auto: " + "<br>".join(html.escape(t) for t in [why, *unavailable])))

        # ---- build settings ----
        self.precision = PrecisionPicker(PRECISIONS)
        self.workspace = widgets.SelectionSlider(
            options=workspace_choices(device_memory_bytes()),
            value=0,
            description="Workspace",
            continuous_update=False,
            **FIELD,
        )
        self.workspace_note = widgets.HTML()
        self.opt_level = widgets.IntSlider(
            value=3,
            min=0,
            max=5,
            description="Builder opt. level",
            tooltip="TensorRT builder optimization level (0 = fastest build)",
            **FIELD,
        )
        self.ort_optimization = widgets.Dropdown(
            options=["disable", "basic", "extended", "all"], value="all", description="ORT graph opt.", **FIELD
        )
        self.iterations = widgets.BoundedIntText(
            value=BuildConfig().iterations or 0,
            min=0,
            max=_most_iterations(BuildConfig().trials),
            description="Timed runs",
            tooltip=f"per trial, exactly; 0: {AUTO_ITERATIONS[0]} to {AUTO_ITERATIONS[1]}, a trial stopping once it "
            f"has run {AUTO_TRIAL_S:g} s (the default); at most {MAX_TIMED_INFERENCES:,} in all trials together "
            "(a run keeps every time)",
            **FIELD,
        )
        self.trials = widgets.BoundedIntText(
            value=BuildConfig().trials,
            min=1,
            max=100,
            description="Trials",
            tooltip="warm-up + timed runs, repeated: the median gets a 95% interval and a stability verdict",
            **FIELD,
        )
        self.shapes_box = widgets.VBox()
        self.values_box = widgets.VBox()
        self.shape_fields: dict[str, tuple[widgets.Text, widgets.Text, widgets.Text]] = {}
        self.value_fields: dict[str, widgets.Text] = {}
        self.calibration = widgets.Dropdown(description="Calibration", **FIELD)
        self.calibration_path = widgets.Text(
            placeholder="calibration .npz (keys = input names)", description="Calib. file", **FIELD
        )
        self.eval_path = widgets.Text(
            placeholder="optional: .npz with the inputs and 'labels'",
            description="Eval data",
            **FIELD,
            tooltip="accuracy is measured on this data (default: the first 32 "
            "calibration samples, else 32 seeded random samples)",
        )
        self.tolerance = widgets.Text(
            placeholder="default: cosine_ok=0.99,cosine_broken=0.9,...",
            description="Tolerance",
            **FIELD,
            tooltip="bounds of the accuracy verdict ok / degraded / broken "
            "(workbench.precision.accuracy.Tolerance fields)",
        )

        # ---- build ----
        fixed = {"flex": "0 0 auto"}  # a long phase text must not squeeze the buttons
        self.build_button = widgets.Button(
            description="Build & profile", button_style="primary", icon="play", layout={**fixed, "width": "150px"}
        )
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", disabled=True, layout={**fixed, "width": "100px"}
        )
        self.progress_bar = widgets.FloatProgress(value=0, min=0, max=1, layout={**fixed, "width": "300px"})
        self.progress_label = widgets.Label(layout={"overflow": "hidden"})
        self.status = widgets.HTML()
        self.log = BuildLog()

        # ---- results ----
        self.metrics = widgets.HTML("<i>No run yet: press Build & profile.</i>")
        self.latency_chart = widgets.Output()
        self.timing_chart = widgets.Output()
        self.memory_chart = widgets.Output()
        self.accuracy = widgets.HTML()
        self.layer_table = LayerTable()
        self.roofline_summary = widgets.HTML()
        self.roofline_chart = widgets.Output()
        self.history = HistoryPanel(self.store, on_show=self.show)
        self.comparison = ComparePanel(self.store)
        self.sweeps = SweepPanel(self.store, self._sweep_request, on_done=lambda _: self.history.refresh())
        self.history.on_filter = self.comparison.set_model_filter
        self.recipe = None  # a precision recipe the next build applies (the Sensitivity tab's "Use recipe")
        self.recipe_note = widgets.HTML()
        self.sensitivity = SensitivityTab(self._sensitivity_request, self.use_recipe, self._sensitivity_done)
        self.serve = ServeTab(lambda: self.run, self.store, on_run=lambda _: self.history.refresh())
        self.tabs = titled_tabs(
            {
                "Key metrics": widgets.VBox([self.metrics, self.latency_chart]),
                "Per-layer time": self.timing_chart,
                "Per-layer memory": self.memory_chart,
                "Accuracy": self.accuracy,
                "Layers": self.layer_table,
                "Roofline": widgets.VBox([self.roofline_summary, self.roofline_chart]),
                "History": self.history.widget,
                "Compare": self.comparison.widget,
                "Sweep": self.sweeps.widget,
                "Sensitivity": self.sensitivity.widget,
                "Serve": self.serve.widget,
            }
        )

        self.widget = self._layout()
        self._wire()
        self._backend_changed()
        self.load(model if model is not None else "digits_cnn")
        self.history.refresh()

    # ---- layout and events -------------------------------------------------------------------------------------

    def _layout(self) -> widgets.Widget:
        model = widgets.VBox(
            [widgets.HTML("<b>Model</b>"), self.model_picker, self.model_path, self.model_upload, self.model_summary],
            layout={"width": "40%", "padding": "0 1em 0 0"},
        )
        settings = widgets.VBox(
            [
                widgets.HTML("<b>Build settings</b>"),
                self.backend,
                self.backend_note,
                self.arch,
                self.compile_note,
                widgets.HTML("Precision"),
                self.precision,
                self.workspace,
                self.workspace_note,
                self.opt_level,
                self.ort_optimization,
                self.iterations,
                self.trials,
                widgets.HTML("Input shapes (opt is what is profiled; min / max give TensorRT's range, empty = opt)"),
                self.shapes_box,
                widgets.HTML("Input values (LO..HI or one value; empty = what the graph says)"),
                self.values_box,
                self.calibration,
                self.calibration_path,
                self.eval_path,
                self.tolerance,
                self.recipe_note,
            ],
            layout={"width": "60%"},
        )
        run = widgets.VBox(
            [
                widgets.HBox([self.build_button, self.cancel_button, self.progress_bar, self.progress_label]),
                self.status,
                self.log.output,
            ]
        )
        return widgets.VBox(
            [
                widgets.HTML(f"{TABS_STYLE}<h3 style='margin:.2em 0'>TensorRT workbench</h3>"),
                widgets.HBox([model, settings]),
                run,
                self.tabs,
            ]
        )

    def _wire(self) -> None:
        self.model_picker.observe(lambda c: self._safely(self._picked, c["new"]), "value")
        self.model_path.observe(lambda c: c["new"] and self._safely(self.load, c["new"]), "value")
        self.model_upload.observe(lambda c: c["new"] and self._safely(self._uploaded, c["new"]), "value")
        self.backend.observe(lambda _: self._backend_changed(), "value")
        self.arch.observe(lambda _: self._backend_changed(), "value")
        # more trials, fewer timed runs each (the field lowers a value over its new maximum)
        self.trials.observe(lambda c: setattr(self.iterations, "max", _most_iterations(c["new"])), "value")
        self.precision.observe(lambda _: self._precision_changed(), "value")
        self.calibration.observe(lambda _: self._precision_changed(), "value")
        self.build_button.on_click(lambda _: self._safely(self.build, wait=False))
        self.cancel_button.on_click(lambda _: self.cancel())

    def _safely(self, action, *args, **kwargs):
        """Run a widget action; an error becomes the status line (a bug's traceback goes to the log) instead of
        vanishing into the kernel's log, where exceptions raised in widget callbacks end up."""
        try:
            return action(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - whatever it is, the user must see it
            self.status.value = self._error_html(e)

    def _error_html(self, error: Exception) -> str:
        """The status line for an error; anything but a WorkbenchError is a bug or a library error: keep its
        traceback in the log."""
        if isinstance(error, WorkbenchError):
            return error_html(str(error))
        self.log.write("".join(traceback.format_exception(error)))
        return error_html(f"{error_text(error)} (traceback in the log)")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ---- model ---------------------------------------------------------------------------------------------

    def load(self, source) -> None:
        """Load a model (sample name, path, Model or bytes) into the panel."""
        named = isinstance(source, str) and source in _sample_models()
        self.model = model = load_model(samples.sample_path(source) if named else source)
        sample = next(
            (n for n, p in _sample_models().items() if model.path and p.resolve() == model.path.resolve()), OTHER_FILE
        )
        self.model_picker.value = sample  # _picked sees the model is loaded already
        self.model_summary.value = model_html(model)
        self._shape_fields(model)
        self._value_fields(model)
        self._data_choices(sample)
        self.status.value = ""

    def _picked(self, value: str) -> None:
        loaded = self.model.path.resolve() if self.model is not None and self.model.path else None
        if value != OTHER_FILE and loaded != samples.sample_path(value).resolve():
            self._safely(self.load, value)

    def _uploaded(self, files) -> None:
        upload = files[0]
        folder = self.store.path / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        model = load_model(bytes(upload["content"]), name=Path(upload["name"]).stem)  # validate before keeping
        target = folder / f"{model.sha256[:12]}-{Path(upload['name']).name}"
        if not target.exists():
            atomic_write(target, bytes(upload["content"]))
        self.load(target)
        self.model_upload.value = ()  # the same file can be uploaded again

    def _shape_fields(self, model) -> None:
        from ..model.inputs import resolve_shapes

        defaults = resolve_shapes(model)
        dynamic = [spec for spec in model.inputs if spec.dynamic]
        self.shape_fields = {
            spec.name: tuple(
                widgets.Text(
                    value=format_shape(defaults[spec.name]) if label == "opt" else "",
                    description=label,
                    placeholder="= opt" if label != "opt" else "",
                    style={"description_width": "30px"},
                    layout={"width": "30%", "max_width": "150px"},
                )
                for label in ("min", "opt", "max")
            )
            for spec in dynamic
        }
        rows = [_input_row(f"{s.name} [{', '.join(map(str, s.shape))}]", *self.shape_fields[s.name]) for s in dynamic]
        self.shapes_box.children = rows or [widgets.HTML("<i>All inputs have fixed shapes.</i>")]

    def _value_fields(self, model) -> None:
        """One field per input for the values it is fed (``--input-range``); the placeholder says what the graph
        gives (a sample rate its If compares with, a table's row count, 0/1 for a mask)."""
        from ..model.inputs import input_value_ranges

        ranges = input_value_ranges(model)
        self.value_fields = {
            spec.name: widgets.Text(placeholder=str(ranges[spec.name])[:80], layout={"width": "60%"})
            for spec in model.inputs
        }
        self.values_box.children = [
            _input_row(f"{spec.name} ({spec.dtype})", self.value_fields[spec.name]) for spec in model.inputs
        ]

    def input_ranges(self) -> dict[str, str]:
        """The value ranges typed in the Input values fields (name -> ``"lo..hi"``), checked; empty ones left out."""
        from ..model.inputs import parse_value_ranges

        given = {name: field.value.strip() for name, field in self.value_fields.items() if field.value.strip()}
        for name, text in given.items():
            parse_value_ranges(f"{name}:{text}")  # a one-line error naming the input before anything runs
        return given

    def _data_choices(self, sample: str) -> None:
        data = SAMPLE_DATA.get(sample)
        options = ([(data[1], CALIB_SAMPLE)] if data else []) + [
            ("random data (accuracy NOT representative)", CALIB_RANDOM),
            ("file…", CALIB_FILE),
        ]
        self.calibration.options = options
        self.calibration.value = options[0][1]
        self.eval_path.value = str(samples.SAMPLES[data[2]]) if data else ""
        self._sample = sample
        self._precision_changed()

    # ---- settings ------------------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """The backend a build uses (``auto`` resolved)."""
        return self._auto_backend.name if self.backend.value == "auto" else self.backend.value

    def _backend_changed(self) -> None:
        from ..backends import get_backend

        name = self.backend_name
        rtx = name == BackendName.TENSORRT_RTX
        self.arch.layout.display = "" if rtx else "none"
        self.precision.set_support(get_backend(name).precision_support(self.arch.value if rtx else None))
        compile_only = self.compile_only
        self.build_button.description = "Compile" if compile_only else "Build & profile"
        self.iterations.disabled = compile_only
        arch, why = html.escape(self.arch.value), html.escape(self._compile_only.get(name, ""))
        what = f"compile only: builds the real engine for {arch} and shows its layers, fusions and memory"
        self.compile_note.value = _hint(f"{what}; it cannot run here ({why})") if compile_only else ""
        tensorrt = name in (BackendName.TENSORRT, BackendName.TENSORRT_RTX)
        self.opt_level.disabled = not tensorrt
        self.ort_optimization.disabled = tensorrt
        self.workspace_note.value = (
            ""
            if tensorrt
            else "<span style='color:#666'>a TensorRT builder limit: "
            "ONNX Runtime ignores it (it is recorded with the run)</span>"
        )

    @property
    def compile_only(self) -> bool:
        """The chosen backend builds engines here without running them: Build compiles, nothing is timed."""
        return self.backend_name in self._compile_only

    def _precision_changed(self) -> None:
        calibrates = Precision(self.precision.value).quantized
        self.calibration.disabled = not calibrates
        self.calibration_path.disabled = not (calibrates and self.calibration.value == CALIB_FILE)

    def config(self) -> BuildConfig:
        """The BuildConfig the widgets describe (raises WorkbenchError for unreadable shapes)."""
        shapes, profiles = [], []
        for name, fields in self.shape_fields.items():
            opt = parse_shapes(f"{name}:{fields[1].value.strip()}")[0][1]
            lo, hi = (
                parse_shapes(f"{name}:{f.value.strip()}")[0][1] if f.value.strip() else opt
                for f in (fields[0], fields[2])
            )  # empty min/max: the same as opt
            shapes.append((name, opt))
            if lo != opt or hi != opt:
                profiles.append(ShapeRange(name, lo, opt, hi))
        return BuildConfig(
            precision=self.precision.value,
            workspace_bytes=self.workspace.value or None,
            optimization_level=self.opt_level.value,
            shapes=tuple(shapes),
            profiles=tuple(profiles),
            iterations=self.iterations.value or None,  # 0: the adaptive count
            ort_graph_optimization=self.ort_optimization.value,
            trials=self.trials.value,
        )

    def _calibration_path(self) -> str | None:
        """The calibration file the Calibration choice names: the loaded sample's own set, the file entered, or
        None for random data (a missing file raises)."""
        choice = self.calibration.value
        if choice == CALIB_SAMPLE:
            return str(samples.SAMPLES[SAMPLE_DATA[self._sample][0]])
        if choice == CALIB_RANDOM:
            return None
        path = self.calibration_path.value.strip()
        if not path:
            raise WorkbenchError("No calibration file given: enter a .npz path or pick the random data option.")
        return path

    def _variant_options(self) -> dict:
        if not Precision(self.precision.value).quantized:
            return {}
        path = self._calibration_path()
        return {"calibration": path} if path else {"random_calibration": True}

    def _sweep_request(self) -> dict:
        """What the Sweep tab takes from the panel: the model file, backend, shapes and timing, calibration and
        evaluation data (the grid itself is the tab's)."""
        if self.model is None or self.model.path is None:
            raise WorkbenchError("No model file loaded: pick a sample or enter a path (an upload: save it first).")
        calibration = self._calibration_path()
        return {
            "model": str(self.model.path),
            "backend": self.backend.value,
            "config": self.config().replace(precision="fp32", profiles=()),
            "calibration": calibration,
            "random_calibration": calibration is None,
            "eval_data": self.eval_path.value.strip() or None,
        }

    # ---- build ---------------------------------------------------------------------------------------------

    @property
    def building(self) -> bool:
        return self._future is not None and not self._future.done()

    def build(self, wait: bool = True):
        """Build and profile with the current settings, save the Run in the store and show it.

        ``wait=True`` returns the Run (and raises what the build raised); ``wait=False`` (the button) builds in a
        background thread and returns a :class:`concurrent.futures.Future` of the Run.
        """
        if self.building:
            raise WorkbenchError("A build is already running: wait for it or press Cancel.")
        if self.model is None:
            raise WorkbenchError("No model loaded: pick a sample, enter a path or upload an .onnx file.")
        request = dict(backend=self.backend.value, config=self.config(), **self._variant_options())
        ranges = self.input_ranges()
        if ranges:
            request["input_ranges"] = ranges
        if self.compile_only:
            request["arch"] = self.arch.value
        else:
            request["eval_data"] = self.eval_path.value.strip() or None
            request["tolerance"] = self.tolerance.value.strip() or None
        if self.recipe is not None:
            request["recipe"] = self.recipe
        self._progress = Progress(self._on_progress)
        self._future = Future()
        self._set_busy(True)
        args = (self.model, request, self._progress, self._future)
        if wait:
            self._work(*args)
            return self._future.result()
        threading.Thread(target=self._work, args=args, daemon=True, name="workbench-build").start()
        return self._future

    def wait(self, timeout: float | None = None):
        """Wait for the build started by the button (or ``build(wait=False)``); returns its Run or raises."""
        if self._future is None:
            raise WorkbenchError("No build was started: press Build & profile or call build().")
        return self._future.result(timeout)

    def cancel(self) -> None:
        """Ask the running build to stop at its next step (nothing is saved)."""
        if self._progress is not None and self.building:
            self._progress.cancel()
            self.progress_label.value = "cancelling…"

    def _work(self, model, request: dict, progress: Progress, future: Future) -> None:
        from ..pipeline import compile as compile_model, profile

        compiling = "arch" in request
        self.log.line(
            f"{'Compile' if compiling else 'Build & profile'} {model.name}: {request['config'].precision} "
            f"on {request['backend']}" + (f" for {request['arch']}" if compiling else "")
        )
        start = time.perf_counter()
        try:  # showing the run is inside too: whatever fails, the future is resolved and the buttons come back
            with self.log.capture():
                run = (compile_model if compiling else profile)(model, progress=progress, **request)
            run = self.store.add(run)
            self.show(run)
            self.history.refresh()
            self.comparison.refresh()
        except Cancelled as e:
            self._finished(future, error=e, message=f"<b>Cancelled</b>: {html.escape(str(e))}")
        except Exception as e:  # noqa: BLE001 - the build thread must report everything
            self._finished(future, error=e, message=self._error_html(e))
        else:
            seconds = time.perf_counter() - start
            self._finished(future, run=run, message=done_html(run, seconds, self.store.path))

    def _finished(self, future: Future, *, run=None, error=None, message: str) -> None:
        self.log.line(f"{'done: run ' + run.id if run else 'stopped: ' + str(error)}")
        self.status.value = message
        self._set_busy(False, ok=error is None)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(run)

    def _set_busy(self, busy: bool, ok: bool = True) -> None:
        self.build_button.disabled = busy
        self.cancel_button.disabled = not busy
        if busy:
            self.status.value = "<span style='color:#666'>building…</span>"
            self.progress_bar.value, self.progress_bar.bar_style = 0, "info"
            self._phase = ""
        elif ok:
            self.progress_bar.value, self.progress_bar.bar_style = 1, "success"
            self.progress_label.value = ""
        else:
            self.progress_bar.bar_style = "warning"  # the label keeps the phase it stopped in

    def _on_progress(self, phase: str, step: int, total: int) -> None:
        """Progress callback (build thread): a log line per phase, the bar at most every UPDATE_INTERVAL_S."""
        now = time.monotonic()
        new_phase = phase != self._phase
        if new_phase:
            self._phase = phase
            self.log.line(phase)
        if not (new_phase or (total and step >= total) or now - self._last_update >= UPDATE_INTERVAL_S):
            return
        self._last_update = now
        self.progress_bar.value = step / total if total else 0.0
        text = f"{phase} {step}/{total}" if total else phase
        self.progress_label.value = text if len(text) <= 80 else text[:79] + "…"

    # ---- results -------------------------------------------------------------------------------------------

    def show(self, run) -> None:
        """Show a Run in the result tabs (key metrics, per-layer time and memory, accuracy, layer table)."""
        from ..views import charts

        self.run = run
        self.metrics.value = metrics_html(run)
        show_figures(self.latency_chart, charts.latency_histogram(run))
        show_figures(self.timing_chart, charts.layer_timing(run), charts.time_by_type(run))
        show_figures(self.memory_chart, charts.layer_memory(run))
        self.accuracy.value = accuracy_html(run)
        self.layer_table.set_layers(run.layers, run.time_source_label)
        self._show_roofline(run)

    def _show_roofline(self, run) -> None:
        """The Roofline tab: each layer against the hardware limit, the lower bound beside the measured latency."""
        from ..analysis.roofline import roofline
        from ..views import charts
        from ..views.formatting_html import note_html, table_html

        if not len(run.layers) or run.layers["time_ms"].isna().all():
            self.roofline_summary.value = "<i>This run has no per-layer times to hold against the hardware limit.</i>"
            show_figures(self.roofline_chart)
            return
        try:
            roof = roofline(run)
        except WorkbenchError as e:  # a GPU the device table does not know: say which ones it does
            self.roofline_summary.value = note_html(str(e))
            show_figures(self.roofline_chart)
            return
        notes = "".join(note_html(n) for n in roof.notes)
        self.roofline_summary.value = f"{notes}{table_html(roof.summary_rows())}"
        show_figures(self.roofline_chart, charts.roofline(roof), charts.time_above_limit(roof))

    def use_recipe(self, recipe) -> None:
        """Apply a precision recipe (dict or recipe.json; None: stop) in the next builds: its precision, and its
        nodes kept in higher precision."""
        from ..precision.recipe import load_recipe

        if recipe is None:
            self.recipe, self.recipe_note.value = None, ""
            return
        self.recipe = load_recipe(recipe)
        self.precision.value = self.recipe["precision"]
        self.recipe_note.value = (
            f"<span style='color:#1b5e20'>Recipe: {len(self.recipe['keep_nodes'])} nodes kept "
            f"out of {html.escape(self.recipe['precision'])}</span>"
        )

    def _sensitivity_request(self):
        if self.model is None:
            raise WorkbenchError("No model loaded: pick a sample, enter a path or upload an .onnx file.")
        options = {**self._variant_options(), "store": self.store}  # the all-low run joins the history too
        return self.model, self.precision.value, options, self.eval_path.value.strip() or None

    def _sensitivity_done(self, run) -> None:
        self.store.add(run)
        self.history.refresh()

    def compare(self, runs, interleave: bool = False):
        """Compare stored runs (ids, id prefixes or Runs) in the Compare tab; returns the Comparison.
        ``interleave``: time them again, alternately in one session, first (a fair A/B)."""
        self.tabs.selected_index = list(self.tabs.children).index(self.comparison.widget)
        return self.comparison.compare(runs, interleave=interleave)


def done_html(run, seconds: float, store_path) -> str:
    """The status line after a build: green only when nothing is wrong with the variant's accuracy."""
    from ..views.report import VERDICT_COLOURS, verdict_text

    verdict = run.accuracy.verdict if run.accuracy is not None else ""
    saved = f"run <code>{run.id}</code> saved in {html.escape(str(store_path))}"
    if verdict in ("broken", "degraded"):
        colour = VERDICT_COLOURS[verdict]
        return (
            f"<span style='color:{colour}'><b>Done in {seconds:.1f} s, but accuracy is "
            f"{html.escape(verdict_text(run.accuracy))}</b> (Accuracy tab: what to try); {saved}</span>"
        )
    return f"<span style='color:#1b5e20'>Done in {seconds:.1f} s: {saved}</span>"


def accuracy_html(run) -> str:
    from ..views.report import accuracy_html as report_accuracy_html

    if run.accuracy is None:
        return (
            "<i>No accuracy check: an FP32 run is the reference. Build another precision (or give evaluation "
            "data with labels) to measure it.</i>"
        )
    return report_accuracy_html(run)
