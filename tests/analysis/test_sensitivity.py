"""Sensitivity on the bundled lossy model: full INT8 really loses, the plan really recovers with few nodes, the
recipe round-trips through profile and the variant cache, and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from real_models import real_model

import workbench as wb
from workbench.analysis.sensitivity import (
    Sensitivity,
    find_groups,
    parse_budget,
    search_plan,
)
from workbench.cli import main
from workbench.model.samples import sample_path
from workbench.precision.recipe import exclusion_options, load_recipe

BUDGET_PT = 0.5


@pytest.fixture(scope="session")
def lossy(tmp_path_factory):
    """One sensitivity search on outlier_digits (INT8, top-1 budget 0.5 pt), written to a folder."""
    cache = tmp_path_factory.getbasetemp() / "cache" / "variants"  # the cache the autouse fixture points at
    out = tmp_path_factory.mktemp("sensitivity")
    run = wb.sensitivity(
        sample_path("outlier_digits"),
        "int8",
        calibration=sample_path("outlier_digits_calib"),
        eval_data=sample_path("outlier_digits_test"),
        budget=f"top1:{BUDGET_PT}",
        out=out,
        cache_dir=cache,
    )
    return run, Sensitivity.from_dict(run.sensitivity), out, cache


def test_full_int8_loses_more_than_the_budget(lossy):
    _, found, _, _ = lossy
    reference = found.reference["label_accuracy"]
    assert reference > 0.95  # a real trained classifier
    low = found.all_low
    assert low["label"] == "all int8" and not low["meets"]
    assert 100 * (reference - low["label_accuracy"]) > BUDGET_PT
    # the two designed culprits (the pruned wide-range input, the outlier feature) rank first, from one pass
    assert [s["group"] for s in found.scores[:2]] == ["/conv1/Conv", "/conv3/Conv"]
    assert found.scores[0]["label"] == "/conv1/Conv (Conv+Relu)"  # the graph's node name and op types
    # groups adding no error are tied, not ordered: they share one rank
    silent = [s for s in found.scores if s["added_db"] == 0 and s["quant_snr_db"] is None]
    assert all(s["tie"] and s["rank"] == silent[0]["rank"] for s in silent)


def test_search_calibrates_once_and_says_int8_does_not_pay_off_on_the_cpu(lossy):
    _, found, _, _ = lossy
    assert found.variants_built == 1  # every candidate is the calibrated graph with Q/DQ pairs edited out
    assert 3 <= found.evaluations == len(found.candidates) <= 2 + 3 + 2 * len(found.plan["kept_groups"])
    # FP32 and the plan timed alternately in one session: a speed-up is claimed only when significant
    against = found.verdict["plan_vs_fp32"]
    assert against["low"] <= against["ratio"] <= against["high"]
    assert found.verdict["pays_off"] == (against["significant"] and against["ratio"] < 1)
    assert found.plan_precision == "int8" and found.recipe["precision"] == "int8"
    if not found.verdict["pays_off"]:  # ONNX Runtime's CPU Q/DQ kernels: the answer says so first
        assert found.summary().startswith("INT8 does not pay off here")
        assert "TensorRT" in found.verdict["text"] and " ms on TensorRT" not in found.verdict["text"]


def test_plan_meets_the_budget_with_the_fewest_nodes(lossy):
    run, found, _, _ = lossy
    plan = found.plan
    assert plan["meets"] and plan["metric"] <= BUDGET_PT
    assert plan["kept_groups"] == ["/conv1/Conv", "/conv3/Conv"]
    measured_smaller = [c for c in found.candidates if len(c["kept_nodes"]) < len(plan["kept_nodes"])]
    assert measured_smaller and not any(c["meets"] for c in measured_smaller)
    timed = [c for c in found.candidates if c["latency_ms"] is not None]
    assert found.all_low in timed and plan in timed and all(c["latency_ms"] > 0 for c in timed)
    # the profiled plan run (its own accuracy check on the evaluation data) agrees
    acc = run.accuracy
    assert 100 * (acc.reference_label_accuracy - acc.label_accuracy) <= BUDGET_PT
    profiled = run.sensitivity["profiled"]
    assert profiled["plan"]["p50_ms"] > 0 and profiled["all_low"]["p50_ms"] > 0
    assert profiled["all_low"]["label_accuracy"] < acc.label_accuracy - 0.5


def test_report_and_run_directory_keep_the_search(lossy):
    run, _, out, _ = lossy
    loaded = wb.load_run(out / "plan")
    assert loaded.sensitivity == json.loads(json.dumps(run.sensitivity))
    html = (out / "plan" / "report.html").read_text()
    assert "Which layers lose accuracy" in html and "all int8" in html
    assert f"{run.sensitivity['profiled']['all_low']['p50_ms']:.4g} ms" in html  # latency beside the plan's
    assert f"{run.sensitivity['profiled']['plan']['p50_ms']:.4g} ms" in html
    assert (out / "all-int8" / "run.json").is_file()
    assert "does not pay off" in html or "pays off" in html  # the verdict, beside the plan
    assert html.count("plotly.js v") == 1  # embedded once, the page opens offline
    assert "plotly_click" in html and "wb-node" in html  # the layer-wise error chart is clickable to its node
    figures = wb.charts.sensitivity_figures(run.sensitivity)
    assert set(figures) == {"Sensitivity ranking", "Plans", "Layer-wise error"}
    bars = figures["Sensitivity ranking"].data[0]
    assert "/conv1/Conv (Conv+Relu)" in bars.y  # the graph's node names with op types
    assert [y for y, c in zip(bars.y, bars.marker.color) if c == "#c62828"] == [
        "/conv3/Conv (Conv+Relu)",
        "/conv1/Conv (Conv+Relu)",
    ]  # the plan's groups marked (most sensitive at the top)
    jump = [r for r in run.sensitivity["layer_error"] if r["jump"]]
    assert [r["node"] for r in jump] == ["/conv1/Conv"]  # where the error first jumps


def test_recipe_round_trips_through_profile_and_the_variant_cache(lossy):
    _, found, out, cache = lossy
    recipe = load_recipe(out / "recipe.json")
    assert recipe["keep_nodes"] == found.plan["kept_nodes"] and recipe["precision"] == "int8"
    model = wb.load_model(sample_path("outlier_digits"))
    again = wb.profile(
        model,
        recipe=out / "recipe.json",
        calibration=sample_path("outlier_digits_calib"),
        eval_data=sample_path("outlier_digits_test"),
        config=wb.BuildConfig(iterations=3),
        cache_dir=cache,
    )
    assert again.precision == "int8"
    # ModelOpt's own variant of the recipe (calibrated with the nodes excluded) is the edited graph the search measured
    assert again.accuracy.label_accuracy == pytest.approx(found.plan["label_accuracy"])
    variant = wb.make_variant(
        model,
        "int8",
        calibration=sample_path("outlier_digits_calib"),
        cache_dir=cache,
        **exclusion_options("int8", recipe["keep_nodes"]),
    )
    full = wb.make_variant(model, "int8", calibration=sample_path("outlier_digits_calib"), cache_dir=cache)
    assert str(variant.path) == again.artifacts["onnx"] and variant.path != full.path  # excluded nodes in the key


def test_layer_error_finds_where_int8_error_jumps(lossy):
    *_, cache = lossy
    model = wb.load_model(sample_path("outlier_digits"))
    variant = wb.make_variant(model, "int8", calibration=sample_path("outlier_digits_calib"), cache_dir=cache)
    table = wb.layer_error(variant, sample_path("outlier_digits_test"), max_samples=8)
    assert table["compared"].all() and list(table["order"]) == sorted(table["order"])
    assert table.attrs["first_jump"] == "/conv1/Conv"
    assert table.set_index("node").loc["/conv1/Conv", "snr_db"] < 10  # the input's per-tensor scale erases pixels
    fig = wb.charts.layer_error(table)
    assert fig.data[0].customdata[0][0] == "/conv1/Conv"


def test_layer_error_holds_the_exposed_tensors_of_few_samples_at_once(lossy, monkeypatch):
    from workbench.analysis import layer_error as module

    *_, cache = lossy
    model = wb.load_model(sample_path("outlier_digits"))
    variant = wb.make_variant(model, "int8", calibration=sample_path("outlier_digits_calib"), cache_dir=cache)
    whole = wb.layer_error(variant, sample_path("outlier_digits_test"), max_samples=8, chunk=4)
    returned = []
    run = module._run

    def counted(session, feeds, names):
        out = run(session, feeds, names)
        returned.append(sum(a.nbytes for a in out.values()))
        return out

    monkeypatch.setattr(module, "_run", counted)
    monkeypatch.setattr(module, "LAYER_MEMORY_BYTES", 1)  # less than one sample's tensors: one sample per run
    cut = wb.layer_error(variant, sample_path("outlier_digits_test"), max_samples=8, chunk=4)
    assert len(returned) == 2 * 8  # FP32 and INT8, one sample each time, each run the same size
    assert returned[0::2] == [returned[0]] * 8 and returned[1::2] == [returned[1]] * 8
    # the same figures, summed over more runs: FP32's side exactly, the INT8 side to ONNX Runtime's batch-dependent
    # quantized kernels
    assert cut["tensor"].tolist() == whole["tensor"].tolist() and cut.attrs["first_jump"] == whole.attrs["first_jump"]
    assert cut.attrs["quantizer_snr_db"] == pytest.approx(whole.attrs["quantizer_snr_db"], rel=1e-6)
    assert np.abs(cut["cosine"] - whole["cosine"]).max() < 0.05


def test_groups_fuse_attention_layernorm_and_residual_adds():
    model = wb.load_model(sample_path("transformer_encoder"))
    groups = find_groups(model, [n.name for n in model.proto.graph.node], "block")
    kinds = {g.kind for g in groups}
    assert {"attention", "layernorm", "residual add"} <= kinds
    attention = next(g for g in groups if g.kind == "attention")
    ops = {n.name: n.op_type for n in model.proto.graph.node}
    assert ops[attention.nodes[0]] == "MatMul" and "Softmax" in [ops[n] for n in attention.nodes]
    assert len({n for g in groups for n in g.nodes}) == sum(len(g.nodes) for g in groups)  # no node twice


def test_cancel_stops_the_search(lossy):
    *_, cache = lossy
    progress = wb.Progress(lambda phase, step, total: phase.startswith("sensitivity: keep") and progress.cancel())
    with pytest.raises(wb.Cancelled):
        search_plan(
            sample_path("outlier_digits"),
            "int8",
            calibration=sample_path("outlier_digits_calib"),
            eval_data=sample_path("outlier_digits_test"),
            cache_dir=cache,
            progress=progress,
        )


def test_budget_parsing():
    assert parse_budget(None, True).kind == "top1" and parse_budget(None, False).value == 0.999
    assert parse_budget("cosine:0.99", True).value == 0.99 and parse_budget(1, True).value == 1.0
    with pytest.raises(wb.WorkbenchError, match="needs labels"):
        parse_budget("top1:0.5", False)
    with pytest.raises(wb.WorkbenchError, match="not understood"):
        parse_budget("top1:half", True)


def test_errors_are_one_line(lossy, tmp_path, capsys):
    *_, cache = lossy
    model = sample_path("outlier_digits")
    calib = sample_path("outlier_digits_calib")
    with pytest.raises(wb.WorkbenchError, match="needs evaluation data") as e:
        search_plan(model, "int8", calibration=calib, cache_dir=cache)
    assert "\n" not in str(e.value)
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(wb.WorkbenchError) as e:
        search_plan(model, "int8", calibration=calib, eval_data=bad, cache_dir=cache)
    assert "input" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(wb.WorkbenchError, match="No plan meets the budget") as e:  # all variants cached already
        search_plan(
            model,
            "int8",
            calibration=calib,
            eval_data=sample_path("outlier_digits_test"),
            budget="cosine:1",
            cache_dir=cache,
            layer_errors=False,
        )
    assert "\n" not in str(e.value)
    code = main(["sensitivity", str(model), "--calib", str(calib), "--eval", str(tmp_path / "missing.npz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    code = main(["profile", str(sample_path("digits_cnn")), "--recipe", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be read" in err and err.count("\n") == 1


def test_panel_tab_finds_the_plan_and_the_next_build_uses_its_recipe(lossy, tmp_path):
    from workbench.results.store import Store
    from workbench.ui import Workbench
    from workbench.ui.parts import figures_in

    panel = Workbench("outlier_digits", store=Store(tmp_path / "workspace"))
    panel.iterations.value = 5
    panel.precision.value = "int8"
    tab = panel.sensitivity
    tab.budget.value = f"top1:{BUDGET_PT}"
    run = tab.find(wait=True)  # every variant is in the cache since the search above
    assert run is not None, tab.status.value
    assert "Done" in tab.status.value and "/conv3/Conv" in tab.summary.value
    assert len(figures_in(tab.charts)) == 3
    assert tab.nodes.label.startswith("0: /conv1/Conv") and "snr_db" in tab.node.value  # the first jump, shown
    stored = set(panel.history.store.list()["run"])
    assert run.id in stored and run.sensitivity["profiled"]["all_low"]["run"] in stored  # both runs in the history
    tab.use_recipe.click()
    assert panel.recipe["keep_nodes"] == run.sensitivity["recipe"]["keep_nodes"]
    built = panel.build()
    acc = built.accuracy
    assert 100 * (acc.reference_label_accuracy - acc.label_accuracy) <= BUDGET_PT
    panel.precision.value = "fp32"
    tab.start.click()  # an error is shown on the tab, one line, not raised into the void
    assert "low precision" in tab.status.value and "Traceback" not in tab.status.value


def test_tensorrt_rtx_engine_facts_per_plan(lossy):
    """Where the TensorRT-RTX compiler is installed, every plan also gets its real engine's layers and memory."""
    pytest.importorskip("tensorrt_rtx")
    *_, cache = lossy
    found = search_plan(
        sample_path("outlier_digits"),
        "int8",
        calibration=sample_path("outlier_digits_calib"),
        eval_data=sample_path("outlier_digits_test"),
        cache_dir=cache,
        compile_arch="sm89",
        layer_errors=False,
        max_samples=128,
    )
    low, plan = found.all_low, found.plan
    timed = [c for c in found.candidates if c["latency_ms"] is not None]  # the timed candidates are compiled
    assert {c["engine_target"] for c in timed} == {"sm89"}
    assert all(c["engine_layers"] > 0 and c["engine_weights_bytes"] > 0 for c in timed)
    # INT8 weights take fewer bytes than the FP16 weights of the nodes the plan keeps
    assert low["engine_weights_bytes"] < plan["engine_weights_bytes"]


def test_cli_answers_first_and_keeps_both_runs_in_the_history(lossy, capsys):
    from workbench.results.store import Store

    *_, cache = lossy  # the variants are cached: the command only evaluates and times
    code = main(
        [
            "sensitivity",
            str(sample_path("outlier_digits")),
            "--calib",
            str(sample_path("outlier_digits_calib")),
            "--eval",
            str(sample_path("outlier_digits_test")),
            "--budget",
            f"top1:{BUDGET_PT}",
        ]
    )
    out = capsys.readouterr().out
    assert code in (0, None)
    assert out.splitlines()[0].startswith(("INT8 does not pay off here", "INT8 pays off here"))
    assert "/conv1/Conv (Conv+Relu)" in out and "outside the documented range" not in out.split("note:")[0]
    ids = next(ln for ln in out.splitlines() if ln.startswith("Runs in the history: "))
    plan_id, low_id = ids.split("plan ")[1].split(",")[0], ids.rsplit(" ", 1)[1]
    stored = set(Store().list()["run"])
    assert {plan_id, low_id} <= stored  # both ids are ones the user can load
    assert Store().get(low_id).precision == "int8"


def test_a_candidate_is_the_calibrated_graph_with_the_kept_nodes_qdq_pairs_removed(lossy):
    from workbench.precision.qdq import keep_unquantized

    *_, cache = lossy
    full = wb.make_variant(
        sample_path("outlier_digits"), "int8", calibration=sample_path("outlier_digits_calib"), cache_dir=cache
    )
    edited = keep_unquantized(full.model.proto, ["/conv1/Conv"])
    producers = {o: n.op_type for n in edited.graph.node for o in n.output}
    convs = {n.name: [producers.get(i) for i in n.input] for n in edited.graph.node if n.op_type == "Conv"}
    assert "DequantizeLinear" not in convs.pop("/conv1/Conv")  # reads its input and weight unquantized
    assert all(readers.count("DequantizeLinear") == 2 for readers in convs.values())  # the others still quantized
    ops = [n.op_type for n in full.model.proto.graph.node]
    after = [n.op_type for n in edited.graph.node]
    assert ops.count("QuantizeLinear") - after.count("QuantizeLinear") == 2  # the input's pair and conv1's weight's
    scales = {t.name: t.raw_data for t in full.model.proto.graph.initializer if "scale" in t.name}
    assert all(scales[t.name] == t.raw_data for t in edited.graph.initializer if t.name in scales)  # not recalibrated
    with pytest.raises(wb.WorkbenchError, match="not in the quantized graph"):
        keep_unquantized(full.model.proto, ["/conv9/Conv"])


def test_layer_error_says_where_low_precision_overflows_and_where_fp32_already_does():
    """A tensor the FP16 variant turns into inf (FP32 finite) scores the worst SNR, so it ranks first; one where FP32
    itself is inf is not scored but listed; neither leaks a numpy warning to the user."""
    import warnings

    from onnx import TensorProto, helper, numpy_helper

    from workbench.analysis.layer_error import EXACT_DB
    from workbench.precision.variant import Variant

    def scale(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.array(value, dtype), name)

    def graph(nodes, inits):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
        y = helper.make_tensor_value_info("d", TensorProto.FLOAT, ["n", 4])
        g = helper.make_graph(nodes, "overflow", [x], [y], inits)
        return wb.load_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())

    tail = [helper.make_node("Mul", ["b", "big"], ["c"], "c"), helper.make_node("Mul", ["c", "big"], ["d"], "d")]
    common = [scale("s", 300.0), scale("big", 1e30)]
    source = graph(
        [helper.make_node("Mul", ["x", "s"], ["a"], "a"), helper.make_node("Mul", ["a", "s"], ["b"], "b"), *tail],
        common,
    )
    half = [  # what an FP16 variant computes: "b" stored in FP16 on its way, and 300 * 300 > 65504
        helper.make_node("Mul", ["x", "s"], ["a"], "a"),
        helper.make_node("Mul", ["a", "s"], ["b32"], "b"),
        helper.make_node("Cast", ["b32"], ["b16"], "b_to_fp16", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["b16"], ["b"], "b_to_fp32", to=TensorProto.FLOAT),
        *tail,
    ]
    variant = Variant(model=graph(half, common), source=source, precision="fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = wb.layer_error(variant, {"x": np.ones((4, 4), np.float32)})
    rows = table.set_index("tensor")
    assert rows.loc["b", "compared"] and rows.loc["b", "snr_db"] == -EXACT_DB and rows.loc["b", "added_db"] > 100
    assert rows.loc["a", "snr_db"] == EXACT_DB  # before the overflow: exact
    assert not rows.loc["d", "compared"] and table.attrs["not_finite"] == ["d"]


def test_random_calibration_is_drawn_at_the_shapes_of_the_evaluation_data(tmp_path):
    """PP-OCR recognition (Paddle2ONNX) has a dynamic width its Reshape only takes at real widths: the search
    calibrates at the evaluation data's 48x96, not the model's default dims (was: ModelOpt failed on the Reshape).
    Max calibration: the model runs on every calibration sample as with entropy, without entropy's histograms of
    its 381 activations (most of this test's time: 116 of 251 s under cProfile on 2 busy cores)."""
    path = real_model("ppocr_rec")
    np.savez(tmp_path / "eval.npz", **wb.make_inputs(wb.load_model(path), {"x": (4, 3, 48, 96)}, seed=5))
    found = search_plan(
        path,
        "int8",
        eval_data=str(tmp_path / "eval.npz"),
        budget="cosine:0.9",
        random_calibration=True,
        calibration_method="max",
        timing_iterations=2,
        backend="onnxruntime",
    )
    assert found.candidates[0]["cosine"] >= 0.9 and found.plan["kept_nodes"] == []  # all-int8 meets this budget


def test_a_plan_with_no_qdq_pair_left_is_named_fp16_and_its_recipe_says_so(lossy):
    from workbench.analysis.sensitivity import changed_nodes, graph_precision
    from workbench.precision.qdq import keep_unquantized

    *_, cache = lossy
    full = wb.make_variant(
        sample_path("outlier_digits"), "int8", calibration=sample_path("outlier_digits_calib"), cache_dir=cache
    )
    assert graph_precision(full.model.proto) == "int8"
    assert graph_precision(keep_unquantized(full.model.proto, changed_nodes(full)[:1])) == "int8"  # pairs remain
    everything = keep_unquantized(full.model.proto, changed_nodes(full))  # every quantized node kept
    assert graph_precision(everything) == "fp16"  # ModelOpt's high-precision dtype: an FP16 graph, no INT8 layer
    assert graph_precision(full.source.proto) == "fp32"


def test_a_speed_up_inside_the_noise_is_not_claimed_and_an_fp16_plan_is_not_an_int8_one():
    from workbench.analysis.sensitivity import _verdict
    from workbench.results.stats import paired_difference

    rng = np.random.default_rng(0)
    states = rng.uniform(0.8, 1.3, 5)  # each round's machine state, shared by every variant's trial of that round

    def trials(speed, noise=0.01):
        return [speed * s * np.exp(rng.normal(0, noise, 20)) for s in states]

    fp32 = trials(1.0)

    def session(low_speed, plan_speed, noise=0.01):
        low, plan = trials(low_speed, noise), trials(plan_speed, noise)
        return {
            "fp32": {"latency_ms": 1.0, "rounds": 5, "against_fp32": None},
            "low": {"latency_ms": low_speed, "rounds": 5, "against_fp32": paired_difference(fp32, low)},
            "plan": {"latency_ms": plan_speed, "rounds": 5, "against_fp32": paired_difference(fp32, plan)},
        }

    reference = {"latency_ms": 1.0, "backend": "onnxruntime"}
    fast = _verdict("int8", reference, {"latency_ms": 0.5}, {"latency_ms": 0.6}, session(0.5, 0.6), "int8")
    assert fast["pays_off"] and fast["text"].startswith("INT8 pays off here: the plan runs 0.6 ms against FP32's 1 ms")
    assert "1.67× faster (" in fast["text"] and "timed alternately with FP32 in one session, 5 rounds" in fast["text"]
    # 3% faster in a session whose rounds scatter by 10%: inside the noise, not claimed
    noisy = session(0.97, 0.97, noise=0.0)
    noisy["plan"]["against_fp32"] = paired_difference(fp32, [t * np.exp(rng.normal(0, 0.1)) * 0.97 for t in fp32])
    assert not noisy["plan"]["against_fp32"].significant
    verdict = _verdict("int8", reference, {"latency_ms": 0.97}, {"latency_ms": 0.97}, noisy, "int8")
    assert not verdict["pays_off"] and verdict["text"].startswith("INT8 does not pay off here")
    assert "no significant difference" in verdict["text"]
    # a plan that left no node in INT8 is FP16's: its speed-up is never INT8's
    fp16 = _verdict("int8", reference, {"latency_ms": 0.5}, {"latency_ms": 0.6}, session(0.5, 0.6), "fp16")
    assert not fp16["pays_off"] and fp16["plan_precision"] == "fp16"
    assert "no node stays in INT8 within the budget: the plan is FP16 (no Q/DQ pair left)" in fp16["text"]


def test_the_time_limit_bounds_the_calibration(tmp_path):
    import time

    with pytest.raises(wb.WorkbenchError, match=r"^The time limit ended during the int8 calibration .*--max-minutes"):
        search_plan(
            sample_path("outlier_digits"),
            "int8",
            calibration=sample_path("outlier_digits_calib"),
            eval_data=sample_path("outlier_digits_test"),
            deadline=time.monotonic() - 1,  # already over: the first calibration step stops it
            cache_dir=tmp_path,
        )
    assert not list(tmp_path.rglob("*.onnx"))  # nothing half-written in the variant cache


def test_profiles_after_the_search_fit_what_is_left_of_the_limit():
    import time
    from types import SimpleNamespace

    from workbench.pipeline import _fitted

    found = SimpleNamespace(reference={"latency_ms": 1000.0}, candidates=[{"latency_ms": 400.0}])
    fitted = _fitted(wb.BuildConfig(), time.monotonic() + 60, found)
    assert fitted.iterations == 7  # 60 s / 2 profiles / (3 trials + the per-layer pass) / 1 s
    assert _fitted(wb.BuildConfig(), time.monotonic() + 1, found).iterations == 5  # never below the minimum
    assert _fitted(wb.BuildConfig(), time.monotonic() + 3600, found).iterations == 100  # never above the config's


def test_screening_runs_only_where_it_fits_the_time_limit():
    import time
    from types import SimpleNamespace

    from workbench.analysis.sensitivity import PlanSearch
    from workbench.progress import Progress

    def search(deadline):
        found = PlanSearch(None, "int8", SimpleNamespace(samples=512), {}, deadline, Progress())
        found.candidates = [{}] * 11  # the all-low candidate and 10 measured in 100 s: 10 s each on 512 samples
        found.measuring_s = 100.0
        return found

    tight = search(time.monotonic() + 60)
    assert not tight.screening_fits(129)  # 129 × 10 s × 32/512 = 81 s: past the limit
    assert tight.notes == [
        "screening the 129 groups one by one (about 81 s) does not fit the time limit: the plan is the bisection's"
    ]
    assert search(time.monotonic() + 120).screening_fits(129) and search(None).screening_fits(129)
