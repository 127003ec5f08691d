"""TensorRT-RTX on the real library, on a machine without a GPU: ``compile`` builds real engines of every sample in
fp32, fp16 and int8 for a named architecture; the layer table and memory come from the DETAILED build log through
the shared layer-information code; unsupported ops, unsupported targets and precisions fail cleanly in one line; the
run is marked compiled, not run, and nothing shows a latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import DATA, cli

import workbench as wb
from workbench.backends import choose_backend, get_backend
from workbench.backends.tensorrt import TensorRTRTXBackend, normalize_arch
from workbench.backends.engine_cache import EngineCache
from workbench.config import BuildConfig
from workbench.errors import Cancelled, WorkbenchError
from workbench.model.samples import digits_calibration, sample_path
from workbench.progress import Progress
from workbench.results.layers import fusion_view
from workbench.results.run import NOT_TIMED, load_run

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by requirements/test.txt")

SAMPLES = ("digits_cnn", "resnet_mini", "transformer_encoder")
PRECISIONS = ("fp32", "fp16", "int8")
#: Ops a compiler may fold into constants, drop, or absorb into a neighbour's memory layout without listing them
#: (shape arithmetic, constants, no-ops, layout moves); every other node must be inside an engine layer.
FOLDABLE = {
    "Constant",
    "Identity",
    "Flatten",
    "Reshape",
    "Shape",
    "Squeeze",
    "Unsqueeze",
    "Cast",
    "Gather",
    "Concat",
    "Slice",
    "ConstantOfShape",
    "Range",
    "Expand",
    "Equal",
    "Where",
    "Transpose",
    "Split",
}


@pytest.fixture(scope="session")
def rtx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("rtx-engines")


@pytest.fixture(scope="session")
def variants(tmp_path_factory):
    """Every sample in fp32, fp16 and int8 (ModelOpt Q/DQ; the digits with their calibration split, the others
    with random calibration, labelled as such), made once."""
    cache = tmp_path_factory.mktemp("variants")
    made = {}
    for sample in SAMPLES:
        model = wb.load_model(sample_path(sample))
        for precision in PRECISIONS:
            options = {}
            if precision == "int8":
                options = (
                    {"calibration": digits_calibration()} if sample == "digits_cnn" else {"random_calibration": True}
                )
            made[sample, precision] = wb.make_variant(model, precision, cache_dir=cache, **options)
    return made


@pytest.fixture(scope="session")
def compiled(variants, rtx_cache):
    backend = TensorRTRTXBackend(rtx_cache)
    return {key: backend.compile(v, BuildConfig(precision=key[1]), arch="sm89") for key, v in variants.items()}


def test_compile_needs_no_gpu_and_running_says_why_in_one_line():
    backend = get_backend("tensorrt-rtx")
    assert backend.can_compile() == (True, "")
    ok, reason = backend.available()
    assert not ok and "\n" not in reason
    assert "8.0, 8.6, 8.9 or 12.x" in reason and "compile" in reason
    with pytest.raises(WorkbenchError, match="tensorrt-rtx backend unavailable"):
        choose_backend("tensorrt-rtx")
    assert choose_backend("auto")[0].name == "onnxruntime"


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_sample_compiles_with_layers_nodes_and_memory(compiled, variants, sample, precision):
    run = compiled[sample, precision]
    report = run.compiled
    assert not run.timed and run.latency is None and not run.latency_ms
    assert run.layers["time_ms"].isna().all()  # no time a GPU did not measure
    assert len(run.layers) == report.engine_layers > 0
    assert report.target == "sm89" and report.compute_capability == "8.9" and report.phases
    # every ONNX node is inside an engine layer, or reported as folded away; only shape/constant ops fold
    model = variants[sample, precision].model
    claimed = {n for nodes in run.layers["onnx_nodes"] for n in nodes}
    ops = {n.name: n.op_type for n in model.proto.graph.node}
    assert set(ops) == claimed & set(ops) | set(report.folded_nodes)
    constant, scales = _constant_nodes(model)
    assert {n for n in report.folded_nodes if ops[n] not in FOLDABLE} <= constant | scales, report.folded_nodes
    assert report.onnx_nodes == len(ops)
    # memory: positive and consistent with each other and with the layer table
    assert report.activation_memory_bytes > 0 and report.weights_memory_bytes > 0
    assert 0 < report.scratch_memory_bytes <= report.activation_memory_bytes
    assert run.memory.plan_bytes >= report.weights_memory_bytes
    assert run.memory.engine_device_bytes == report.activation_memory_bytes
    assert 0 < run.layers["activation_bytes"].sum() and (run.layers["weight_bytes"] >= 0).all()
    assert run.layers["weight_bytes"].sum() >= 0.5 * report.weights_memory_bytes
    # precision, formats and streams come from the layer block
    assert set(run.layers["precision"]) <= {"fp32", "fp16", "int8", "int32", "int64", "bool", "fp8"}
    assert run.layers["output_formats"].str.len().gt(0).all() and (run.layers["stream_id"] >= 0).all()


def _constant_nodes(model) -> tuple[set[str], set[str]]:
    """Nodes whose every input is a constant (foldable at build time), and elementwise ops with one constant operand
    (a scale a compiler absorbs into the GEMM next to it, e.g. attention's 1/sqrt(d))."""
    known = {t.name for t in model.proto.graph.initializer}
    constant, scales = set(), set()
    for node in model.proto.graph.node:  # ONNX graphs are topologically sorted
        if all(not i or i in known for i in node.input):
            constant.add(node.name)
            known.update(node.output)
        elif node.op_type in ("Mul", "Div", "Add", "Sub") and any(i in known for i in node.input):
            scales.add(node.name)
    return constant, scales


@pytest.mark.parametrize("sample", SAMPLES)
def test_lower_precisions_really_change_the_engine(compiled, sample):
    fp32, fp16, int8 = (compiled[sample, p] for p in PRECISIONS)
    assert set(fp32.layers["precision"]) & {"fp16", "int8"} == set()
    assert (fp16.layers["precision"] == "fp16").sum() > len(fp16.layers) // 2
    assert (int8.layers["precision"] == "int8").any()  # read from the engine, not assumed
    assert fp16.compiled.weights_memory_bytes < fp32.compiled.weights_memory_bytes


def test_fusion_view_of_a_compiled_engine(compiled, variants):
    run = compiled["resnet_mini", "fp32"]
    view = fusion_view(run.layers, variants["resnet_mini", "fp32"].model)
    conv_relu_add = view.iloc[0]
    assert conv_relu_add["fused"] == 3 and [n.rsplit("/", 1)[-1] for n in conv_relu_add["onnx_nodes"]] == [
        "Conv",
        "Relu",
        "Add",
    ]
    assert view.attrs["unmapped"] == list(run.compiled.folded_nodes)


def test_compiled_run_saves_loads_and_reports_not_timed(compiled, tmp_path):
    from workbench.pipeline import save_with_report

    saved = save_with_report(compiled["digits_cnn", "int8"], tmp_path / "run")
    loaded = load_run(saved.directory)
    assert loaded.timed is False and loaded.compiled == saved.compiled
    assert (saved.directory / "engine.plan").stat().st_size == saved.memory.plan_bytes
    assert json.loads((saved.directory / "layer_info.json").read_text())["Layers"]
    html = (saved.directory / "report.html").read_text()
    assert NOT_TIMED in html and "Compiled engine" in html and "tensorrt_rtx --onnx=" in html
    assert " ms<" not in html  # no latency figure anywhere


def test_engine_cache_keys_by_version_arch_model_and_config(variants, rtx_cache):
    backend = TensorRTRTXBackend(rtx_cache)
    variant = variants["digits_cnn", "fp32"]
    key = backend.plan_key(variant, BuildConfig(), "sm89")
    assert key.tensorrt_version.startswith("RTX ") and key.gpu_name == "sm89" and key.compute_capability == "8.9"
    assert backend.plan_key(variant, BuildConfig(), "sm120") != key
    again = backend.compile(variant, BuildConfig(), arch="sm89")
    assert again.compiled.cache_hit and len(again.layers) == len(
        backend.compile(variant, BuildConfig(), arch="sm89").layers
    )


def test_unsupported_target_and_precision_refused_before_the_build(variants, tmp_path):
    backend = TensorRTRTXBackend(tmp_path)
    with pytest.raises(WorkbenchError, match=r"Hopper \(H100, H200\) is not supported"):
        normalize_arch("sm90")
    with pytest.raises(WorkbenchError, match="B200"):
        normalize_arch("sm100")
    assert normalize_arch("8.6") == normalize_arch("SM86") == "sm86"
    support = backend.precision_support("sm86")
    assert not support["fp8"][0] and "8.9" in support["fp8"][1]
    assert not backend.precision_support("sm75")["bf16"][0] and backend.precision_support("sm89")["fp8"][0]
    assert not backend.precision_support({"name": "NVIDIA H200", "compute_capability": "9.0"})["fp32"][0]
    with pytest.raises(WorkbenchError, match="bf16 cannot be compiled for sm75"):
        wb.compile(sample_path("digits_cnn"), "bf16", arch="sm75")
    assert EngineCache(tmp_path).entries() == []


def _model_with(path, op: str, domain: str = ""):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"], name="relu"),
            helper.make_node(op, ["y"], ["z"], name="the_node", domain=domain),
        ],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.INT64, [2, None])],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def test_unsupported_op_fails_in_one_line_naming_node_and_op(tmp_path):
    cache = tmp_path / "engines"
    with pytest.raises(WorkbenchError) as err:
        TensorRTRTXBackend(cache).compile(
            wb.make_variant(_model_with(tmp_path / "nz.onnx", "NonZero")), BuildConfig(), arch="sm89"
        )
    message = str(err.value)
    assert "\n" not in message and "node 'the_node' (NonZero)" in message
    assert message.startswith("TensorRT-RTX cannot parse nz") and "Replace that operator" in message
    assert EngineCache(cache).entries() == [] and not any(cache.glob("*/engine.plan"))
    # a custom-domain op (TensorRT-RTX has no plugins) is refused as the model loads, naming the domain
    with pytest.raises(WorkbenchError, match="unknown operator domain 'com.example'"):
        wb.compile(_model_with(tmp_path / "custom.onnx", "FancyNorm", "com.example"), arch="sm89")


def test_shared_build_path_reports_phases_and_cancels_cleanly(variants, tmp_path):
    """The TensorRT build path (parse, strongly typed network, progress monitor) through the real RTX builder."""
    events = []
    backend = TensorRTRTXBackend(tmp_path)
    variant = variants["transformer_encoder", "fp16"]
    config = BuildConfig(precision="fp16", shapes=(("input_ids", (2, 24)),))
    run = backend.compile(variant, config, Progress(lambda *e: events.append(e)), arch="sm120")
    assert any(phase.startswith("TensorRT: ") for phase, *_ in events)
    assert run.inputs[0].shape == (2, 24)  # the dynamic input built for the shape asked for
    cancelling = Progress(lambda *e: None)
    cancelling.cancel()
    with pytest.raises(Cancelled):
        backend.compile(variant, config.replace(optimization_level=2), cancelling, arch="sm86")
    assert len(EngineCache(tmp_path).entries()) == 1


def test_cli_compile_writes_a_compiled_run_and_leaves_no_temp_folder(tmp_path):
    out, temp = tmp_path / "run", tmp_path / "temp"
    temp.mkdir()
    argv = [
        sys.executable,
        "-m",
        "workbench.cli",
        "compile",
        str(DATA / "resnet_mini.onnx"),
        "--arch",
        "sm89",
        "--out",
        str(out),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(temp)})
    assert result.returncode == 0, result.stderr
    assert "compiled, not run" in result.stdout and "Largest fusions" in result.stdout
    assert not list(temp.iterdir()), "the compile left temporary files behind"
    meta = json.loads((out / "run.json").read_text())
    assert meta["timed"] is False and meta["latency"] is None and meta["compiled"]["engine_layers"] > 0
    bad = cli("compile", DATA / "resnet_mini.onnx", "--arch", "sm90")  # refused before any build
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Hopper" in bad.stderr


def test_onnxruntime_compile_view_shows_its_fusions_without_running(tmp_path):
    run = wb.compile(
        sample_path("transformer_encoder"),
        backend="onnxruntime",
        config=BuildConfig(shapes=(("input_ids", (1, 32)),)),
        out=tmp_path / "ort",
    )
    assert run.timed is False and run.latency is None and run.compiled.compiler.startswith("ONNX Runtime")
    fused = run.layers[run.layers["type"] == "BiasGelu"]
    assert len(fused) == 2 and all(any(n.endswith("/Erf") for n in nodes) for nodes in fused["onnx_nodes"])
    assert run.compiled.engine_layers < run.compiled.onnx_nodes and run.memory.weights_bytes > 0
    with pytest.raises(WorkbenchError, match="drop it for onnxruntime"):
        wb.compile(sample_path("digits_cnn"), backend="onnxruntime", arch="sm89")
