"""trtexec command lines (never a flag TensorRT 11 rejects) and Triton repositories that Triton's own schema reads."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import pytest

import workbench as wb
from workbench.config import PRECISIONS, BuildConfig, ShapeRange
from workbench.errors import WorkbenchError
from workbench.interop.trtexec import REMOVED_IN_11, command, command_for_run, import_trtexec

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "recorded"

# Options trtexec 11.1 parses (samples/common/sampleOptions.cpp at the TensorRT 11.1 OSS release), for the flags
# the workbench writes. A command made of these cannot fail with "Unknown option".
ACCEPTED_BY_11 = {
    "--onnx",
    "--saveEngine",
    "--noTF32",
    "--memPoolSize",
    "--builderOptimizationLevel",
    "--sparsity",
    "--timingCacheFile",
    "--noBuilderCache",
    "--minShapes",
    "--optShapes",
    "--maxShapes",
    "--shapes",
    "--warmUp",
    "--iterations",
    "--duration",
    "--noCudaGraph",
    "--profilingVerbosity",
    "--exportLayerInfo",
    "--exportProfile",
    "--exportTimes",
    "--dumpProfile",
}
ACCEPTED_BY_10 = ACCEPTED_BY_11 - {"--noCudaGraph"} | {
    "--stronglyTyped",
    "--useCudaGraph",
    "--separateProfileRun",
    "--noDataTransfers",
}


def _configs():
    dynamic = (ShapeRange("input:0", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32)),)
    for precision, profiles, graph, cache, extras in itertools.product(
        PRECISIONS,
        ((), dynamic),
        (False, True),
        (False, True),
        ({}, {"workspace_bytes": 3 << 29, "optimization_level": 5, "sparsity": True, "duration_s": 2.5}),
    ):
        yield BuildConfig(
            precision=precision,
            profiles=profiles,
            cuda_graph=graph,
            timing_cache=cache,
            shapes=(("mask", (1, 16)),),
            **extras,
        )


CONFIGS = list(_configs())


def _flags(cmd: str) -> list[str]:
    args = shlex.split(cmd)
    assert args[0] == "trtexec"
    return [a.partition("=")[0] for a in args[1:]]


@pytest.mark.parametrize("version", [10, 11])
def test_no_command_holds_a_flag_tensorrt_11_rejects(version):
    for config in CONFIGS:
        flags = _flags(command(config, "models/net.onnx", version=version))
        assert not set(flags) & set(REMOVED_IN_11), (config, flags)
        assert set(flags) <= (ACCEPTED_BY_11 if version == 11 else ACCEPTED_BY_10), set(flags) - ACCEPTED_BY_11
        assert len(flags) == len(set(flags))  # each option once


def test_removed_flags_include_the_weakly_typed_precision_flags():
    assert {"--fp16", "--int8", "--best", "--bf16", "--fp8", "--calib", "--workspace", "--explicitBatch"} <= set(
        REMOVED_IN_11
    )


def test_versions_differ_where_trtexec_differs():
    for config in CONFIGS:
        v10, v11 = set(_flags(command(config, "m.onnx", version=10))), set(_flags(command(config, "m.onnx")))
        graph_precision = config.precision in ("fp16", "bf16", "int8", "fp8")
        assert ("--stronglyTyped" in v10) is graph_precision  # 10.x: needed for Q/DQ and AutoCast graphs
        assert ("--useCudaGraph" in v10) is config.cuda_graph and "--useCudaGraph" not in v11
        assert ("--noCudaGraph" in v11) is (not config.cuda_graph)  # 11.x captures graphs by default
        assert ("--noTF32" in v11) is (config.precision == "fp32")
        assert ("--sparsity" in v11) is config.sparsity
    with pytest.raises(WorkbenchError, match="choose 10 or 11"):
        command(BuildConfig(), "m.onnx", version=9)


def test_the_command_carries_the_config_back_through_import(tmp_path):
    for i, config in enumerate(CONFIGS[::7]):
        cmd = command(config, "dir with space/net.onnx")
        log = tmp_path / f"run{i}.log"  # how trtexec echoes its command line first thing
        log.write_text(f"&&&& RUNNING TensorRT.trtexec [TensorRT v110100] [b1] # {cmd}\n")
        back = import_trtexec([log])
        assert back.model["path"] == "dir with space/net.onnx"
        assert back.config.profiles == config.profiles
        assert back.config.optimization_level == config.optimization_level
        assert back.config.sparsity == config.sparsity and back.config.shape_map["mask"] == (1, 16)
        if config.precision == "fp32":
            assert back.precision == "fp32" and back.precision_source == "trtexec flag --noTF32"
        assert back.config.workspace_bytes == config.workspace_bytes


def test_the_engine_is_named_after_the_model_and_precision_once():
    def values(cmd):
        return dict(a.partition("=")[::2] for a in shlex.split(cmd)[1:])

    fp16 = values(command(BuildConfig(precision="fp16"), "out/resnet.fp16.onnx"))
    assert fp16["--saveEngine"] == "out/resnet.fp16.plan"
    assert fp16["--exportLayerInfo"] == "out/resnet.fp16.layers.json"
    assert values(command(BuildConfig(precision="int8"), "resnet.onnx"))["--saveEngine"] == "resnet.int8.plan"


def test_names_with_separators_are_quoted_for_trtexec():
    cmd = command(CONFIGS[-1], "m.onnx")
    shapes = next(a for a in shlex.split(cmd) if a.startswith("--minShapes="))
    assert shapes.startswith("--minShapes='input:0':1x3x32x32")


def test_exports_are_what_workbench_import_reads():
    cmd = command(BuildConfig(precision="fp16"), "m.onnx", engine_path="out/m.plan")
    args = dict(a.partition("=")[::2] for a in shlex.split(cmd)[1:])
    assert args["--saveEngine"] == "out/m.plan" and args["--profilingVerbosity"] == "detailed"
    assert {args["--exportLayerInfo"], args["--exportProfile"], args["--exportTimes"]} == {
        "out/m.layers.json",
        "out/m.profile.json",
        "out/m.times.json",
    }
    assert wb.trtexec_command(BuildConfig(precision="fp16"), "m.onnx", engine_path="out/m.plan") == cmd


def test_every_run_has_a_command():
    folder = FIXTURES / "trtexec" / "resnet18-a100-qat"
    run = import_trtexec([folder])
    cmd = command_for_run(run)
    assert f"--onnx={run.model['path']}" in shlex.split(cmd)
    assert "--shapes=input.1:32x3x224x224" in shlex.split(cmd)
    assert not set(_flags(cmd)) & set(REMOVED_IN_11)


# ---- Triton ----------------------------------------------------------------------------------------------------


def _model_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _dynamic_batch_run(tmp_path):
    """The 11.1 fixture rewritten as a dynamic-batch engine (batch 1..16), as its I/O Tensors would record it."""
    raw = json.loads((FIXTURES / "trtexec-11.1" / "h100" / "model-trained.layerinfo.json").read_text())
    for t in raw["I/O Tensors"]:
        t["Dimensions"][0] = -1
    x = raw["I/O Tensors"][0]["ProfileInfo"][0]
    x["MinShape"][0], x["OptShape"][0], x["MaxShape"][0] = 1, 4, 16
    (tmp_path / "li.json").write_text(json.dumps(raw))
    return import_trtexec([tmp_path / "li.json"])


@pytest.fixture
def plan(tmp_path) -> Path:
    path = tmp_path / "engine.bin"
    path.write_bytes(b"placeholder bytes standing for a serialized engine")  # the export only copies it
    return path


def test_tensorrt_run_round_trips_through_tritons_schema(tmp_path, plan):
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp16"
    from tritonclient.grpc import model_config_pb2 as pb

    from workbench.interop.triton import export_triton

    run = import_trtexec([folder], plan=plan)
    model_dir = export_triton(run, tmp_path / "repo", instances=2)
    cfg = _model_config(model_dir)
    assert model_dir == tmp_path / "repo" / "resnet"
    assert (model_dir / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert cfg.name == "resnet" and cfg.platform == "tensorrt_plan"
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")  # batch fixed at 32: no batching
    (inp,), (out,) = cfg.input, cfg.output
    assert (inp.name, list(inp.dims)) == (run.inputs[0].name, list(run.inputs[0].shape))
    assert (out.name, list(out.dims)) == (run.outputs[0].name, list(run.outputs[0].shape))
    assert inp.data_type == pb.TYPE_FP32
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    with pytest.raises(WorkbenchError, match="batch dimension is fixed"):
        export_triton(run, tmp_path / "repo", max_batch_size=8)


def test_dynamic_batch_comes_from_the_profile(tmp_path, plan):
    from tritonclient.grpc import model_config_pb2 as pb

    from workbench.interop.triton import export_triton

    run = _dynamic_batch_run(tmp_path)
    assert run.config.profiles[0].max[0] == 16
    cfg = _model_config(export_triton(run, tmp_path / "repo", name="digits", plan=plan))
    assert cfg.max_batch_size == 16 and cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, 28, 28]
    z = next(o for o in cfg.output if o.name == "z")  # a per-item scalar: dims [1], reshaped to []
    assert z.data_type == pb.TYPE_INT64 and list(z.dims) == [1] and list(z.reshape.shape) == []
    smaller = _model_config(
        export_triton(run, tmp_path / "repo", name="digits", plan=plan, max_batch_size=8, dynamic_batching=False)
    )
    assert smaller.max_batch_size == 8 and not smaller.HasField("dynamic_batching")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["digits"]  # replaced, nothing left over
    with pytest.raises(WorkbenchError, match="exceeds the engine's optimization profile"):
        export_triton(run, tmp_path / "repo", plan=plan, max_batch_size=32)


def test_imported_run_without_a_plan_says_where_to_pass_one(tmp_path):
    folder = FIXTURES / "trtexec" / "resnet18-a100-fp32"
    from workbench.interop.triton import export_triton

    with pytest.raises(WorkbenchError, match="--plan"):
        export_triton(import_trtexec([folder]), tmp_path / "repo")
    assert not (tmp_path / "repo" / "resnet").exists()


def test_onnxruntime_run_exports_its_onnx_model(tmp_path, mlp_path):
    from tritonclient.grpc import model_config_pb2 as pb

    from workbench.interop.triton import ONNX_MAX_BATCH, export_triton

    run = wb.profile(
        wb.load_model(mlp_path),
        "fp32",
        backend="onnxruntime",
        config=BuildConfig(iterations=2, warmup_ms=0, shapes=(("x", (3, 4)),)),
    )
    model_dir = export_triton(run, tmp_path / "repo", kind="KIND_CPU")
    cfg = _model_config(model_dir)
    assert cfg.platform == "onnxruntime_onnx"
    assert (model_dir / "1" / "model.onnx").read_bytes() == Path(mlp_path).read_bytes()
    assert cfg.max_batch_size == ONNX_MAX_BATCH  # the model's batch is dynamic, not the 3 it was profiled at
    assert cfg.HasField("dynamic_batching")
    assert [(t.name, list(t.dims), t.data_type) for t in cfg.input] == [("x", [4], pb.TYPE_FP32)]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("z", [8])]
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    with pytest.raises(WorkbenchError, match="KIND_GPU or KIND_CPU"):
        export_triton(run, tmp_path / "repo", kind="KIND_TPU")


def test_a_model_profiled_by_relative_path_exports_from_another_folder(tmp_path, mlp_path, monkeypatch):
    """`workbench profile data/x.onnx` in one folder, `workbench export ... RUN` later in another."""
    from workbench.interop.triton import export_triton

    monkeypatch.chdir(mlp_path.parent)
    run = wb.profile(
        mlp_path.name,
        "fp32",
        backend="onnxruntime",
        config=BuildConfig(iterations=2, warmup_ms=0, shapes=(("x", (3, 4)),)),
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert f"--onnx={mlp_path.resolve()} " in command_for_run(run)
    model_dir = export_triton(run, tmp_path / "repo", kind="KIND_CPU")
    assert (model_dir / "1" / "model.onnx").read_bytes() == mlp_path.read_bytes()


def test_weakly_typed_import_exports_its_builder_flag_for_10_and_refuses_11(fixtures_dir):
    run = import_trtexec([fixtures_dir / "trtexec" / "resnet18-a100-fp16"])
    assert run.config.precision == "fp16" and run.precision_source.startswith("build options")
    v10 = command_for_run(run, version=10).split()
    assert "--fp16" in v10 and "--stronglyTyped" not in v10 and "--noTF32" not in v10
    assert any(a.startswith("--saveEngine=") and a.endswith(".fp16.plan") for a in v10)
    with pytest.raises(WorkbenchError, match="TensorRT 11 has no --fp16.*--precision fp16"):
        command_for_run(run, version=11)
    # a run whose precision is in its graph keeps the strongly typed commands, free of removed flags
    graph_run = run.replace(source="profile")
    assert not set(command_for_run(graph_run, version=11).split()) & set(REMOVED_IN_11)
