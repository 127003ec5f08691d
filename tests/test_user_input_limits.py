"""Numbers, names and files a careless user (or an attacker) gives: every number is finite and bounded (the bound in
the message), an error line quotes at most a bounded excerpt of what was given, a recipe file is a regular file of
bounded size with every field checked, and a typed device name that fits several GPUs is refused with the matches."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from real_models import real_model
from support import DATA

import workbench as wb
from workbench.cli import main
from workbench.errors import WorkbenchError, excerpt


def _cli(*argv) -> tuple[int, str]:
    """Exit status and the one ``error:`` line (notes and progress go to stderr too; a traceback fails)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors: "workbench profile: error: ..."
            code = e.code
    errors = [line for line in err.getvalue().splitlines() if "error: " in line]
    assert len(errors) == 1 and "Traceback" not in err.getvalue(), err.getvalue()[-2000:]
    return code, errors[0] + "\n"


@pytest.mark.parametrize(
    "option, value, bound",
    [
        ("--iterations", str(10**12), "1,000,000"),
        ("--trials", str(10**9), "1,000"),
        ("--duration", "1e12", "86,400"),
        ("--duration", "nan", "86,400"),
        ("--warmup", "inf", "3,600,000"),
        ("--warmup", "-1", "3,600,000"),
        ("--opt-level", "9", "5"),
    ],
)
def test_numeric_options_out_of_range_stop_at_once_with_the_bound(option, value, bound, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    code, err = _cli("profile", DATA / "digits_cnn.onnx", "--backend", "onnxruntime", option, value)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert bound in err and "out of range" in err or "is not" in err


def test_config_values_from_files_are_checked_like_options():
    for bad in ({"iterations": 1e12}, {"warmup_ms": float("inf")}, {"trials": "3"}, {"sparsity": "yes"}):
        with pytest.raises(WorkbenchError):
            wb.BuildConfig.from_dict({**wb.BuildConfig().to_dict(), **bad})
    assert wb.BuildConfig.from_dict({"iterations": 100.0}).iterations == 100  # JSON numbers are floats


def test_calibration_batch_zero_is_refused_not_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    code, err = _cli("profile", DATA / "digits_cnn.onnx", "--precision", "int8", "--random-calib", "--calib-batch", "0")
    assert code == 2 and "calibration_batch" in err and err.count("\n") == 1, err


def test_error_lines_quote_a_bounded_excerpt(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    huge = "A" * 100_000
    for argv in (
        ("profile", DATA / "digits_cnn.onnx", "--precision", huge),
        ("profile", DATA / "digits_cnn.onnx", "--shapes", f"input:{huge}"),
    ):
        code, err = _cli(*argv)
        assert code == 2 and len(err) < 2_500, (argv[:2], len(err))
    assert (
        len(str(WorkbenchError(huge))) <= 2_000 and len(excerpt(huge)) < 200 and "100,000 characters" in excerpt(huge)
    )


def test_a_typed_device_that_names_several_gpus_is_refused_with_the_matches():
    from workbench.analysis.devices import device_for

    with pytest.raises(WorkbenchError, match="names several GPUs.*A100 PCIe 80GB.*A100 SXM 40GB"):
        device_for("A100")
    with pytest.raises(WorkbenchError) as e:
        device_for("A" * 100_000)
    assert len(str(e.value)) < 700 and "100,000 characters" in str(e.value)
    assert device_for("A100 SXM 80GB").name == "A100 SXM 80GB"
    assert device_for("NVIDIA A100-SXM4-40GB", typed=False).name == "A100 SXM 40GB"  # as NVML writes it


# ---- recipe files ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_model():
    return wb.load_model(real_model("ppocr_cls"))


def _recipe(model, **changes) -> dict:
    from workbench.precision.recipe import make_recipe

    names = [n.name for n in model.proto.graph.node if n.op_type == "Conv"][:2]
    return {**make_recipe(model, "fp16", names), **changes}


def _write(path, value) -> str:
    if isinstance(value, bytes):
        path.write_bytes(value)
    else:
        path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


BAD_RECIPES = {
    "non-UTF-8": lambda r: b"\xff" + json.dumps(r).encode(),
    "100k-deep nesting": lambda r: "[" * 100_000 + "]" * 100_000,
    "no precision": lambda r: {k: v for k, v in r.items() if k != "precision"},
    "model a list": lambda r: {**r, "model": ["x"]},
    "model name a number": lambda r: {**r, "model": {"name": 3, "sha256": "0"}},
    "keep_nodes a string": lambda r: {**r, "keep_nodes": "conv"},
    "5 MB node name": lambda r: {**r, "keep_nodes": ["n" * (5 << 20)]},
    "options a list": lambda r: {**r, "options": []},
    "budget a number": lambda r: {**r, "budget": 3},
}


@pytest.mark.parametrize("damage", list(BAD_RECIPES), ids=list(BAD_RECIPES))
def test_a_bad_recipe_is_one_short_line_naming_the_file(damage, recipe_model, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    path = _write(tmp_path / "recipe.json", BAD_RECIPES[damage](_recipe(recipe_model)))
    with pytest.raises(WorkbenchError) as e:
        wb.profile(recipe_model.path, recipe=path, config=wb.BuildConfig(iterations=1, warmup_ms=0, trials=1))
    assert "\n" not in str(e.value) and path in str(e.value) and len(str(e.value)) < 600
    code, err = _cli("profile", recipe_model.path, "--recipe", path)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and len(err) < 700


@pytest.mark.parametrize("kind", ["fifo", "dev-zero link", "folder"])
def test_a_recipe_that_is_not_a_regular_file_is_refused_before_reading(kind, recipe_model, tmp_path):
    path = tmp_path / "recipe.json"
    if kind == "fifo":
        os.mkfifo(path)  # a read would block forever
    elif kind == "dev-zero link":
        path.symlink_to("/dev/zero")  # a read would never end
    else:
        path.mkdir()
    code, err = _cli("profile", recipe_model.path, "--recipe", path)
    assert code == 2 and ("not a regular file" in err) and err.count("\n") == 1, err


def test_a_recipe_larger_than_the_bound_is_refused_by_its_size(recipe_model, tmp_path):
    from workbench.precision.recipe import MAX_RECIPE_BYTES, load_recipe

    path = tmp_path / "recipe.json"
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(MAX_RECIPE_BYTES + 1)
    with pytest.raises(WorkbenchError, match=f"larger than {MAX_RECIPE_BYTES:,} bytes"):
        load_recipe(path)
    good = _write(tmp_path / "good.json", _recipe(recipe_model))
    assert load_recipe(good)["precision"] == "fp16"


def test_calibration_files_are_checked_before_they_are_read(tmp_path):
    """A small .npz that declares a 4 TiB array is refused from its header (nothing decompressed or allocated); a
    pipe or a link to /dev/zero named as calibration data is refused without reading."""
    import zipfile

    import numpy.lib.format as npy_format

    from workbench.model.samples import sample_path
    from workbench.precision.calibration import load_calibration

    model = wb.load_model(sample_path("digits_cnn"))
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:
        archive.writestr("input.npy", header.getvalue())
    with pytest.raises(WorkbenchError, match="declares 4,398,046,511,104 bytes of arrays, more than the"):
        load_calibration(tmp_path / "bomb.npz", model)
    os.mkfifo(tmp_path / "pipe.npz")
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    for name in ("pipe.npz", "zero.npz"):
        with pytest.raises(WorkbenchError, match="not a regular file"):
            load_calibration(tmp_path / name, model)
    assert load_calibration(sample_path("digits_calib"), model).samples > 0


def test_sweep_workers_and_sensitivity_limits_are_bounded(tmp_path, monkeypatch):
    from workbench.analysis.sensitivity import search_plan
    from workbench.model.samples import sample_path
    from workbench.sweeps.executors import LocalExecutor

    with pytest.raises(WorkbenchError, match="number of workers 1000000000 is out of range.*1,024"):
        LocalExecutor(workers=10**9)  # it used to make a billion worker slots
    for bad in ({"max_minutes": float("nan")}, {"max_minutes": -1}, {"max_samples": 0}, {"scope_depth": 10**9}):
        with pytest.raises(WorkbenchError, match="out of range|is not"):
            search_plan(sample_path("outlier_digits"), "int8", **bad)
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(tmp_path))
    code, err = _cli("sweep", DATA / "digits_cnn.onnx", "--workers", str(10**9))
    assert code == 2 and "1,024" in err
