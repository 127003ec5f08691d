"""The TensorRT backend against the real Python bindings of TensorRT 10.2, 10.16 and 11.4 (no GPU, no TensorRT).

What a TensorRT 10.x or 11.x user relies on: every TensorRT name and member the package uses exists in their
version (or is asked for with hasattr); the profiler, progress monitor and logger work as subclasses of the real
base classes; without a usable builder the backend says why and ``auto`` falls back to ONNX Runtime; the package's
maps from TensorRT enums cover every member of each version's enums.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys

import pytest
from _contract import REPO, VERSIONS

from workbench.backends import tensorrt as backend
from workbench.results.layerinfo import TRT_DTYPES

per_version = pytest.mark.parametrize("version", VERSIONS)


def _trt_sources() -> dict[str, ast.Module]:
    """Every package module that imports tensorrt, parsed (path relative to the repository -> tree)."""
    found = {}
    for path in sorted((REPO / "workbench").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(n, ast.Import) and any(a.name == "tensorrt" for a in n.names) for n in ast.walk(tree)):
            found[str(path.relative_to(REPO))] = tree
    assert found, "no module of the package imports tensorrt: the scan looks in the wrong place"
    return found


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _hasattr_guards(node: ast.AST, parents: dict) -> set[tuple[str, str]]:
    """(object source, attribute) pairs that an enclosing ``if hasattr(obj, "attr")`` guarantees."""
    guards = set()
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            for call in ast.walk(node.test):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "hasattr"
                    and len(call.args) == 2
                    and isinstance(call.args[1], ast.Constant)
                ):
                    guards.add((ast.unparse(call.args[0]), call.args[1].value))
    return guards


def _trt_chains(tree: ast.Module):
    """Each outermost ``trt.A.B...`` attribute chain: (names after trt, line, hasattr guards around it)."""
    aliases = {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name == "tensorrt"
    }
    parents = _parents(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(parents.get(node), ast.Attribute):
            continue
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in aliases:
            yield tuple(chain), node.lineno, _hasattr_guards(node, parents)


#: Members of TensorRT objects that are plain strings (enum member and tensor names, the version).
_STRING_MEMBERS = {"name", "__version__"}


def _trt_member_uses(tree: ast.Module):
    """Members used on TensorRT objects: (member, line, hasattr-guarded names around the use).

    A small flow analysis finds the TensorRT objects: parameters and fields annotated ``trt.X``, results of
    ``trt.X(...)``, whatever is read or returned from a TensorRT object, and names and ``self.`` fields assigned
    from any of these.
    """
    aliases = {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name == "tensorrt"
    }
    parents = _parents(tree)
    trt_fields = {
        n.target.id
        for n in ast.walk(tree)
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and "trt." in ast.unparse(n.annotation)
    }
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def is_trt(expr, names) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in names or expr.id in aliases
        if isinstance(expr, ast.Call):
            return is_trt(expr.func, names)
        if isinstance(expr, ast.Attribute):
            if expr.attr in _STRING_MEMBERS:
                return False
            return expr.attr in trt_fields or is_trt(expr.value, names)
        if isinstance(expr, ast.Subscript):
            return is_trt(expr.value, names)
        return False

    scopes = []
    for _ in range(2):  # the second pass sees self. fields assigned in other methods
        scopes = []
        for func in functions:
            args = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
            names = {a.arg for a in args if a.annotation is not None and "trt." in ast.unparse(a.annotation)}
            for node in sorted(
                (n for n in ast.walk(func) if isinstance(n, (ast.Assign, ast.AnnAssign))), key=lambda n: n.lineno
            ):
                if node.value is None or not is_trt(node.value, names):
                    continue
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
                    elif isinstance(target, ast.Attribute):
                        trt_fields.add(target.attr)
            scopes.append((func, names))
    for func, names in scopes:
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Attribute)
                and not (isinstance(node.value, ast.Name) and node.value.id in aliases)
                and is_trt(node.value, names)
            ):
                yield node.attr, node.lineno, {attr for _, attr in _hasattr_guards(node, parents)}


@per_version
def test_bindings_import_and_builder_is_unavailable(version, probes):
    report = probes[version]
    assert report["version"] == version
    assert "site" in report["module"], "the probe imported a tensorrt other than the prepared bindings"
    assert report["availability"]["builder_error"], "with the stub libraries trt.Builder must fail"


def missing_names(api: dict[str, list[str]]) -> list[str]:
    """``trt.A.B`` chains the package uses that ``api`` (a probe's API surface) lacks, outside hasattr guards."""
    missing = []
    for path, tree in _trt_sources().items():
        for chain, line, guards in _trt_chains(tree):
            head = chain[0]
            if head not in api and ("trt", head) not in guards:
                missing.append(f"{path}:{line} trt.{'.'.join(chain)}")
            elif (
                len(chain) > 1
                and head in api
                and api[head]
                and chain[1] not in api[head]
                and (f"trt.{head}", chain[1]) not in guards
            ):
                missing.append(f"{path}:{line} trt.{'.'.join(chain)}")
    return missing


@per_version
def test_every_trt_name_the_package_uses_exists(version, probes):
    missing = missing_names(probes[version]["api"])
    assert not missing, f"TensorRT {version} lacks names the package uses unguarded: {missing}"


@per_version
def test_every_tensorrt_member_the_package_calls_exists(version, probes):
    """Members used on TensorRT objects exist in this version (a removed API such as ``device_memory_size`` or
    ``platform_has_fast_fp16`` may only be used behind hasattr)."""
    here = {m for members in probes[version]["api"].values() for m in members}
    uses = [(path, *use) for path, tree in _trt_sources().items() for use in _trt_member_uses(tree)]
    seen = {member for _, member, _, _ in uses}
    # the scan must see the calls the backend is built on, or it proves nothing
    assert {
        "create_network",
        "build_serialized_network",
        "execute_async_v3",
        "set_tensor_address",
        "report_to_profiler",
        "get_engine_information",
        "device_memory_size_v2",
    } <= seen, sorted(seen)
    missing = [
        f"{path}:{line} .{member}"
        for path, member, line, guarded in uses
        if member not in here and member not in guarded
    ]
    assert not missing, f"TensorRT {version} lacks members the package uses without hasattr: {missing}"


@per_version
def test_package_type_checks_against_the_real_bindings(version, bindings, tmp_path):
    """mypy with typing stubs generated from this version's bindings: attributes, enum members, call signatures."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy) for the typed check against the bindings")
    stubs = bindings[version].stubs
    if stubs is None:
        pytest.skip("pybind11-stubgen is not installed (pip install pybind11-stubgen): no typing stubs")
    files = list(_trt_sources())
    errors = _mypy(files, stubs, tmp_path)
    assert not errors, f"mypy against TensorRT {version}:\n" + "\n".join(errors)


@per_version
def test_type_check_would_catch_a_removed_api(version, bindings, probes, tmp_path):
    """The mypy check is not vacuous: code using an API TensorRT 11 removed fails exactly where it is gone."""
    if importlib.util.find_spec("mypy") is None or bindings[version].stubs is None:
        pytest.skip("needs mypy and pybind11-stubgen")
    sample = tmp_path / "uses_removed_api.py"
    sample.write_text(
        "def build():\n    import tensorrt as trt\n"
        "    builder = trt.Builder(trt.Logger())\n"
        "    return builder.platform_has_fast_fp16, trt.BuilderFlag.FP16\n"
    )
    errors = _mypy([str(sample)], bindings[version].stubs, tmp_path, prefix=str(sample))
    api = probes[version]["api"]
    expected = {"platform_has_fast_fp16" in api["Builder"], "FP16" in api["BuilderFlag"]}
    assert expected == {True} and not errors or expected == {False} and len(errors) == 2, errors


def _mypy(files, stubs, tmp_path, prefix="workbench") -> list[str]:
    env = {**__import__("os").environ, "MYPYPATH": str(stubs)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--check-untyped-defs",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--show-error-codes",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy"),
            *files,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return [line for line in proc.stdout.splitlines() if line.startswith(prefix) and ": error:" in line]


@per_version
def test_profiler_subclass_collects_layer_times(version, probes):
    report = probes[version]["profiler"]
    assert report["is_iprofiler"]
    stats = report["stats"]
    # three inferences of 1, 2 and 3 ms: numpy's 90th percentile interpolates to 2.8
    assert stats["conv1 + relu1"] == {"time_ms": 2.0, "median_ms": 2.0, "p90_ms": pytest.approx(2.8), "calls": 3}
    # a name reported twice per inference is two layers, numbered like the layer information numbers them
    assert stats["fc"]["time_ms"] == 0.5 and stats["fc #2"]["time_ms"] == 0.25
    assert stats["fc"]["calls"] == stats["fc #2"]["calls"] == 3


@per_version
def test_progress_monitor_reports_phases_and_cancels(version, probes):
    report = probes[version]["monitor"]
    assert report["is_monitor"]
    assert report["phases"] == ["Building engine", "Tactic search"]
    assert report["events"][:3] == [
        ["TensorRT: Building engine", 0, 3],
        ["TensorRT: Tactic search", 0, 2],
        ["TensorRT: Tactic search", 1, 2],
    ]
    assert report["first_step"] is True
    assert report["step_after_cancel"] is False and report["cancelled"] is True
    # an exception in the user's callback must not cross into TensorRT: it stops the build instead
    assert report["broken_step"] is False
    assert "progress widget was closed" in report["broken_failure"]


@per_version
def test_progress_monitor_serializes_calls_from_builder_threads(version, probes):
    report = probes[version]["monitor_threads"]
    assert report["calls"] == 1 + 160  # phase start, then every step of eight threads
    assert report["overlaps"] == 0  # tqdm bars and widgets are not thread-safe


@per_version
def test_logger_keeps_warnings_and_errors(version, probes):
    report = probes[version]["logger"]
    assert report["is_ilogger"]
    assert [line[1] for line in report["lines"]] == ["a warning", "Network has dynamic inputs but no profile"]
    assert report["errors"] == ["Network has dynamic inputs but no profile"]


@per_version
def test_backend_reports_why_tensorrt_is_unavailable(version, probes):
    report = probes[version]["availability"]
    assert report["available"] is False
    assert f"TensorRT {version} could not create a builder" in report["reason"]
    assert "\n" not in report["reason"]
    assert report["auto_backend"] == "onnxruntime"
    assert report["auto_why"].startswith("onnxruntime (TensorRT unavailable: TensorRT")
    assert report["named_error"].startswith("tensorrt backend unavailable: TensorRT")


@per_version
def test_enum_maps_cover_every_member(version, probes):
    enums = probes[version]["enums"]
    gaps = {
        "DataType (workbench.results.layerinfo.TRT_DTYPES)": set(enums["DataType"]) - set(TRT_DTYPES),
        "TensorFormat (TENSOR_FORMATS)": set(enums["TensorFormat"]) - set(backend.TENSOR_FORMATS),
        "LayerType (LAYER_TYPES)": set(enums["LayerType"]) - set(backend.LAYER_TYPES),
    }
    assert not any(gaps.values()), f"TensorRT {version} enum members the package does not map: {gaps}"


def test_enum_maps_name_only_real_members(probes):
    """Keys that no version has are typos."""
    union = {enum: {m for r in probes.values() for m in r["enums"][enum]} for enum in probes[VERSIONS[0]]["enums"]}
    stale = {
        "TENSOR_FORMATS": set(backend.TENSOR_FORMATS) - union["TensorFormat"],
        "LAYER_TYPES": set(backend.LAYER_TYPES) - union["LayerType"],
        "ML_DTYPES": set(backend.ML_DTYPES) - union["DataType"],
    }
    assert not any(stale.values()), stale


def test_no_version_string_comparisons():
    """Differences between TensorRT versions are detected with hasattr, never by comparing version strings."""
    offenders = []
    for path, tree in _trt_sources().items():
        for node in ast.walk(tree):
            text = ast.unparse(node)
            if isinstance(node, ast.Compare) and "version" in text.lower():
                offenders.append(f"{path}:{node.lineno} {text}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("startswith", "split", "partition")
                and "__version__" in text
            ):
                offenders.append(f"{path}:{node.lineno} {text}")
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "packaging" in text:
                offenders.append(f"{path}:{node.lineno} {text}")
    assert not offenders, offenders
