"""The cache roof beside the DRAM roof: which roof each layer is held against, the findings when a layer beats the
roof that applies (and only then), and how the CPU's roofs are measured on a busy machine and cached."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.analysis import devices
from workbench.analysis.checks import checked
from workbench.analysis.roofline import roofline
from workbench.results.run import LatencyStats, Run, TensorInfo
from workbench.views import charts

MIB = 2**20
#: A CPU roof with round figures: 1 TFLOP/s, DRAM 10 GB/s, a 1 MiB L3 cache at 40 GB/s.
CPU = devices.Device(
    "test CPU",
    {"fp32": 1e12},
    10e9,
    "measured on this CPU (test)",
    "cpu",
    cache_bytes=MIB,
    measured="2026-12-07 21:00:00",
    cache_bandwidth=40e9,
    cache_source="measured on this CPU (test): Add on half the cache",
    cache_name="L3 cache",
)
SMALL = (1, 16, 64, 64)  # 65,536 float32 elements: a Relu reads and writes 524,288 B, half the cache
BIG = (1, 64, 128, 128)  # 1,048,576 elements: 8 MiB through a Relu, 8× the cache


def _relus(tmp_path):
    """A model with one small Relu (its bytes fit in the cache) and a chain of four big ones (they do not)."""
    io = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["s"], ["s1"], name="small")]
    nodes += [helper.make_node("Relu", [f"b{i}"], [f"b{i + 1}"], name=f"big{i + 1}") for i in range(4)]
    graph = helper.make_graph(
        nodes,
        "relus",
        [io("s", TensorProto.FLOAT, SMALL), io("b0", TensorProto.FLOAT, BIG)],
        [io("s1", TensorProto.FLOAT, SMALL), io("b4", TensorProto.FLOAT, BIG)],
    )
    path = tmp_path / "relus.onnx"
    wb.Model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), name="relus").save(path)
    return path


def _run(times: dict) -> Run:
    layers = [
        {"name": name, "type": "Relu", "precision": "fp32", "time_ms": ms, "onnx_nodes": [name]}
        for name, ms in times.items()
    ]
    return Run(
        backend="tensorrt",
        layers=layers,
        latency=LatencyStats.from_times([sum(times.values())] * 3),
        model={"name": "relus"},
        inputs=(TensorInfo("s", "float32", SMALL), TensorInfo("b0", "float32", BIG)),
    )


def _ms(nbytes: float, rate: float) -> float:
    return 1000.0 * nbytes / rate


SMALL_BYTES, BIG_BYTES = 2 * 4 * 65_536, 2 * 4 * 1_048_576
#: Correct times: the small Relu at 30 GB/s (3× DRAM's bandwidth, 75% of the cache's), the big ones at 8 GB/s (80%).
CORRECT = {"small": _ms(SMALL_BYTES, 30e9), **{f"big{i}": _ms(BIG_BYTES, 8e9) for i in range(1, 5)}}


def _findings(run, roof) -> dict:
    return {f.check: f for f in checked(run, roof).findings}


def test_each_layer_is_held_against_the_roof_its_bytes_fit(tmp_path):
    model = _relus(tmp_path)
    roof = roofline(_run(CORRECT), device=CPU, model=model)
    layers = roof.layers.set_index("name")
    assert layers.loc["small", "bytes"] == SMALL_BYTES and layers.loc["big1", "bytes"] == BIG_BYTES
    assert layers.loc["small", "memory_roof"] == "L3 cache" and layers.loc["small", "roof_bandwidth"] == 40e9
    assert layers.loc["small", "pct_of_roof"] == pytest.approx(75.0)  # 300% of DRAM's 10 GB/s
    assert layers.loc["small", "limit_ms"] == pytest.approx(_ms(SMALL_BYTES, 40e9))
    assert set(layers.loc[[f"big{i}" for i in range(1, 5)], "memory_roof"]) == {"DRAM"}
    assert layers.loc["big1", "pct_of_roof"] == pytest.approx(80.0)
    assert roof.lower_bound_ms == pytest.approx(_ms(SMALL_BYTES, 40e9) + 4 * _ms(BIG_BYTES, 10e9))
    assert (
        layers.loc["small", "note"] == "above DRAM's bandwidth, within the L3 cache roof: its data stays in the cache"
    )
    assert any(n.startswith("Within the L3 cache roof: 1 memory-bound layers (small)") for n in roof.notes)
    # a correct run: no layer above the roof that applies to it, no warning
    assert not {"roof_percent", "lower_bound"} & set(_findings(_run(CORRECT), roof))
    # without a cache roof the same small layer is at 300% of DRAM's and a finding
    dram_only = devices.Device("test CPU", {"fp32": 1e12}, 10e9, "test", "cpu", measured="2026-12-07 21:00:00")
    bare = roofline(_run(CORRECT), device=dram_only, model=model)
    assert bare.layers.set_index("name").loc["small", "pct_of_roof"] == pytest.approx(300.0)
    assert _findings(_run(CORRECT), bare)["roof_percent"].value == "1: small (300%)"


def test_a_layer_time_divided_by_ten_is_found_above_the_roof_that_applies(tmp_path):
    """The check still bites: one big Relu's time divided by 10 (8× DRAM's bandwidth), then the small one's (7.5×
    the cache's): each is named, above which roof, and blamed on its own figures, not on the roof the others keep."""
    model = _relus(tmp_path)
    wrong = _run({**CORRECT, "big2": CORRECT["big2"] / 10})
    roof = roofline(wrong, device=CPU, model=model)
    found = _findings(wrong, roof)["roof_percent"]
    assert found.value == "1: big2 (800%)"
    assert found.cause == (
        "the figures of these layers, not the roof: 1 memory-bound, above the DRAM roof (each moves more than the "
        "1 MiB L3 cache holds), 3% of the time with known work, while the other layers respect the same roof (roof of "
        "test CPU (peak 1000 GFLOP/s, DRAM 10 GB/s, L3 cache 40 GB/s for layers moving ≤ 1 MiB, measured "
        "2026-12-07 21:00:00)): the work counted for Relu is too high or their measured time too short"
    )
    assert found.fix.startswith("check the work the roofline counts for Relu")
    assert roof.layers.set_index("name").loc["big2", "note"] == (
        "above the roof without a proven cause: its bytes do not fit in the cache"
    )
    wrong = _run({**CORRECT, "small": CORRECT["small"] / 10})
    found = _findings(wrong, roofline(wrong, device=CPU, model=model))["roof_percent"]
    assert found.value == "1: small (750%)"
    assert found.cause.startswith(
        "the figures of these layers, not the roof: 1 memory-bound, above the L3 cache roof (their bytes fit in the "
        "1 MiB L3 cache), 0% of the time with known work"
    )
    # layers holding most of the time above a CPU roof blame the roof, and ask to measure it again
    low = devices.Device(**{**CPU.__dict__, "bandwidth": 1e9, "cache_bandwidth": 2e9})
    found = _findings(_run(CORRECT), roofline(_run(CORRECT), device=low, model=model))["roof_percent"]
    assert found.value == "5: small (1500%), big1 (800%), big2 (800%)…"
    assert found.cause.startswith("the device's roof is too low: 1 memory-bound, above the L3 cache roof")
    assert "100% of the time with known work" in found.cause and "--remeasure" in found.fix
    # a roof measured while other processes held the cores is not ruled out
    busy = devices.Device(
        **{**CPU.__dict__, "contended": "the cache bandwidth with 0 of 23 rounds uncontended (load 12)"}
    )
    found = _findings(wrong, roofline(wrong, device=busy, model=model))["roof_percent"]
    assert found.cause.startswith("these layers' figures or the roof: 1 memory-bound, above the L3 cache roof")
    assert "measured while other processes held the cores (the cache bandwidth with 0 of 23 rounds" in found.cause
    assert found.fix.startswith("measure the roof again on an idle machine (workbench roofline --remeasure)")


def test_within_the_roofs_tolerance_is_no_finding(tmp_path):
    """A layer 4% faster than the least time its roofs allow (8 MiB: 7 at DRAM's 10 GB/s, a cache-full of 1 MiB at
    the cache's 40 GB/s) is within the roof's 5% (timer noise); a measured roof whose best rounds differ by 12% has
    that tolerance, so 10% faster is within it too, while 13% is not."""
    model = _relus(tmp_path)
    least = _ms(7 * MIB, 10e9) + _ms(MIB, 40e9)
    near = _run({**CORRECT, "big1": least / 1.04})
    assert "roof_percent" not in _findings(near, roofline(near, device=CPU, model=model))
    spread = devices.Device(**{**CPU.__dict__, "tolerance_pct": 12.0})
    for faster, fires in ((1.10, False), (1.13, True)):
        run = _run({**CORRECT, "big1": least / faster})
        assert ("roof_percent" in _findings(run, roofline(run, device=spread, model=model))) is fires


def test_a_gpu_cache_of_unknown_bandwidth_is_not_a_roof_to_judge_against(tmp_path):
    """An H100's L2 (50 MiB, datasheet) has no published bandwidth: a layer whose bytes fit in it and beat HBM is
    not judged (no roof is known for it) and says so; one whose bytes do not fit still is."""
    h100 = devices.find_device("NVIDIA H100 80GB HBM3")
    assert (h100.name, h100.cache_bytes, h100.cache_bandwidth, h100.cache_name) == (
        "H100 SXM",
        50 * MIB,
        None,
        "L2 cache",
    )
    model = _relus(tmp_path)
    fast = {"small": _ms(SMALL_BYTES, 5000e9), **{f"big{i}": _ms(BIG_BYTES, 3000e9) for i in range(1, 5)}}
    run = _run(fast)
    roof = roofline(run, device=h100, model=model)
    small = roof.layers.set_index("name").loc["small"]
    assert small.memory_roof == "DRAM" and small.pct_of_roof == pytest.approx(100 * 5000 / 3350)
    assert small.note == "above DRAM's bandwidth; its bytes fit in the cache, whose bandwidth is not known: not judged"
    assert "roof_percent" not in _findings(run, roof)
    huge = devices.Device(**{**h100.__dict__, "cache_bytes": 2**10})  # nothing fits in a 1 KiB cache
    assert _findings(run, roofline(run, device=huge, model=model))["roof_percent"].value == "1: small (149%)"


def test_a_gpu_l2_bandwidth_measured_on_the_card_becomes_its_cache_roof(tmp_path, monkeypatch):
    measured = "measured on NVIDIA H100 80GB HBM3, 2026-12-07, by benchmarks/gpu_memory_roofs.py (test figure)"
    monkeypatch.setitem(devices.L2_BANDWIDTH, "H100 SXM", (8000.0, measured))
    h100 = devices.find_device("NVIDIA H100 80GB HBM3")
    assert (h100.cache_bandwidth, h100.cache_source) == (8000e9, measured)
    model = _relus(tmp_path)
    for rate, shown in ((5000e9, None), (10000e9, "1: small (125%)")):
        run = _run({"small": _ms(SMALL_BYTES, rate), **{f"big{i}": _ms(BIG_BYTES, 3000e9) for i in range(1, 5)}})
        roof = roofline(run, device=h100, model=model)
        assert roof.layers.set_index("name").loc["small", "memory_roof"] == "L2 cache"
        finding = _findings(run, roof).get("roof_percent")
        assert (finding.value if finding else None) == shown


def test_the_roofline_chart_draws_the_cache_roof_with_its_source(tmp_path):
    roof = roofline(_run(CORRECT), device=CPU, model=_relus(tmp_path))
    lines = {t.name: t for t in charts.roofline(roof).data if t.mode == "lines"}
    assert set(lines) == {
        "roof: fp32 measured (1 T/s, DRAM 10 GB/s)",
        "cache roof: fp32 measured, L3 cache 40 GB/s for layers moving ≤ 1 MiB (measured on this CPU)",
    }
    cache = lines["cache roof: fp32 measured, L3 cache 40 GB/s for layers moving ≤ 1 MiB (measured on this CPU)"]
    assert cache.line.dash == "dot" and np.allclose(cache.y, np.minimum(1e12, np.asarray(cache.x) * 40e9))
    no_cache = devices.Device("test CPU", {"fp32": 1e12}, 10e9, "test", "cpu")
    assert [
        t.name
        for t in charts.roofline(roofline(_run(CORRECT), device=no_cache, model=_relus(tmp_path))).data
        if t.mode == "lines"
    ] == ["roof: fp32 measured (1 T/s, DRAM 10 GB/s)"]


# ---- measuring the CPU's roofs --------------------------------------------------------------------------------


def _measured(rate, uncontended=5, spread=1.0, load=0.3, share=0.97):
    return devices.Measured(rate, 5 if uncontended == 5 else 9, uncontended, spread, load, share)


@pytest.fixture
def measured_cpu(monkeypatch, tmp_path):
    """A cache of its own, a 32 MiB L3 cache, and measurements that return what ``rates`` holds."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(devices, "_cpu_cache", lambda: (32 * MIB, "L3 cache"))
    monkeypatch.setattr(devices, "_quiet", lambda: False)
    rates = {"flops": _measured(50e9), "bandwidth": _measured(10e9), "cache": _measured(40e9)}
    calls = []

    def cpu():
        calls.append("cpu")
        return rates["flops"], rates["bandwidth"]

    def cache(size):
        assert size == 32 * MIB
        calls.append("cache")
        return rates["cache"]

    monkeypatch.setattr(devices, "_measure_cpu", cpu)
    monkeypatch.setattr(devices, "_measure_cpu_cache", cache)
    return rates, calls


def test_cpu_roofs_are_measured_once_and_cached(measured_cpu, tmp_path, monkeypatch):
    rates, calls = measured_cpu
    first = devices.cpu_device()
    assert (first.peaks["fp32"], first.bandwidth, first.cache_bandwidth, first.cache_bytes) == (
        50e9,
        10e9,
        40e9,
        32 * MIB,
    )
    assert first.cache_name == "L3 cache" and first.tolerance_pct == 5.0 and calls == ["cpu", "cache"]
    assert (
        "best of 5 rounds (5 uncontended; load 0.3 on" in first.source
        and "ran on 97% of the cores' time" in first.source
    )
    assert first.cache_source.startswith("measured on this CPU (")
    assert (
        "ONNX Runtime's elementwise Add on working sets of 0.25 and 0.5 of the 32 MiB L3 cache (sysfs)"
        in first.cache_source
    )
    assert devices.cpu_device() == first and calls == ["cpu", "cache"]  # read from the cache, not measured again
    # measuring again on a busy machine keeps the best rate observed, figure by figure
    rates.update(flops=_measured(25e9, 0, load=7.5, share=0.2), bandwidth=_measured(20e9), cache=_measured(30e9))
    again = devices.cpu_device(refresh=True)
    assert (again.peaks["fp32"], again.bandwidth, again.cache_bandwidth) == (50e9, 20e9, 40e9)
    assert "in each of 2 sessions the best kept" in again.source and "remeasured only with --remeasure" in again.source
    key, _ = devices.machine_key()
    saved = json.loads((tmp_path / "roofline" / f"cpu-{key}.json").read_text())
    assert saved["rounds"]["fp32_flops"]["uncontended"] == 5 and saved["rounds"]["bandwidth"]["load_1m"] == 0.3
    # kept per machine: the same CPU model with another number of usable cores is another machine
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(9)))
    assert devices.machine_key()[0] != key and "9 cores" in devices.cpu_device().name


def test_a_roof_measured_under_contention_is_measured_again_once_the_machine_is_quiet(measured_cpu, monkeypatch):
    rates, calls = measured_cpu
    rates.update(
        flops=_measured(20e9, 0, spread=40.0, load=8.0, share=0.16), bandwidth=_measured(5e9, 0, load=8.0, share=0.16)
    )
    busy = devices.cpu_device()
    assert busy.peaks["fp32"] == 20e9 and "(0 uncontended; load 8 on" in busy.source
    assert busy.tolerance_pct == 5.0  # the 40% spread of contended rounds is the load's, not the roof's
    assert busy.contended == (
        "the peak with 0 of 9 rounds uncontended (load 8); the DRAM bandwidth with 0 of 9 rounds uncontended (load 8)"
    )
    assert devices.cpu_device().peaks["fp32"] == 20e9 and calls == ["cpu", "cache"]  # still busy: kept
    monkeypatch.setattr(devices, "_quiet", lambda: True)
    rates.update(flops=_measured(60e9, spread=12.0), bandwidth=_measured(4e9))  # quiet: measured again, rises kept
    quiet = devices.cpu_device()
    assert (quiet.peaks["fp32"], quiet.bandwidth) == (60e9, 5e9) and calls == ["cpu", "cache", "cpu", "cache"]
    assert quiet.tolerance_pct == 12.0  # the uncontended peak repeats within 12%: layers within it are no finding
    assert quiet.contended == "the DRAM bandwidth with 0 of 9 rounds uncontended (load 8)"  # the kept, higher figure
    assert devices.cpu_device() == quiet and len(calls) == 4  # measured uncontended: not again


def test_a_roof_cached_before_the_cache_roof_gains_it(measured_cpu, tmp_path):
    rates, calls = measured_cpu
    key, machine = devices.machine_key()
    old = {"machine": key, "cpu": machine, "fp32_flops": 195e9, "bandwidth": 43e9, "measured": "2026-12-07 20:06:38"}
    (tmp_path / "roofline").mkdir()
    (tmp_path / "roofline" / f"cpu-{key}.json").write_text(json.dumps(old))
    dev = devices.cpu_device()
    assert (dev.peaks["fp32"], dev.bandwidth, dev.cache_bandwidth) == (195e9, 43e9, 40e9) and calls == ["cache"]
    assert "best of 5 short measurements" in dev.source  # the old figures say no more about their rounds


def test_best_of_adds_rounds_while_other_processes_hold_the_cores(monkeypatch):
    """Rounds in which the process ran on less than 80% of the cores' time are contended: more rounds run until
    five uncontended ones did; the best rate is kept, with the load and the spread of the two best rounds."""
    monkeypatch.setattr(devices, "_cores", lambda: 2)
    monkeypatch.setattr(devices.time, "sleep", lambda s: None)
    clock = iter(np.arange(0.0, 100.0, 0.1))  # 0.1 s between readings: a round lasts 0.1 s
    monkeypatch.setattr(devices.time, "perf_counter", lambda: float(next(clock)))
    shares = iter([0.2, 0.3, 0.9, 0.95, 0.9, 0.9, 0.99, 1.0])  # share of 2 cores × 0.1 s each round ran on
    ran = [0]

    def cpu_time_waited():
        return ran[0], 0

    rates = iter([100.0, 90.0, 200.0, 210.0, 190.0, 205.0, 199.0, 180.0])

    def measure_once():
        ran[0] += round(next(shares) * 2e8)
        return next(rates)

    monkeypatch.setattr("workbench.env.cpu_time_waited", cpu_time_waited)
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (3.5, 3.0, 2.0))
    found = devices._best_of(measure_once, rounds=5)
    assert (found.rate, found.rounds, found.uncontended) == (210.0, 7, 5)
    assert found.spread_pct == pytest.approx(2.4) and found.load_1m == 3.5 and found.cpu_share == 0.9


def test_the_cache_roof_is_measured_on_this_cpu():
    """A real measurement (short): ONNX Runtime's Adds on a working set that fits a 4 MiB cache move data, and the
    figure says how its rounds went."""
    found = devices._measure_cpu_cache(4 * MIB, rounds=2)
    assert found.rate > 1e8 and found.rounds >= 2 and found.uncontended <= found.rounds
    assert 0 < found.cpu_share <= 1.0 and found.spread_pct >= 0


def test_a_layer_moving_more_than_the_cache_holds_may_read_a_cache_full_from_it(tmp_path):
    """A big Relu (8 MiB through it) on a CPU with a 4 MiB cache: its input, just written by the Relu before, can
    be read from the cache, so the least time is 4 MiB at DRAM's 10 GB/s plus 4 MiB at the cache's 40 GB/s. Above
    DRAM's roof for all its bytes but within that bound: a note, no finding; faster than the bound: a finding."""
    model = _relus(tmp_path)
    roomy = devices.Device(**{**CPU.__dict__, "cache_bytes": 4 * MIB})
    least = _ms(4 * MIB, 10e9) + _ms(4 * MIB, 40e9)
    partly = _run({**CORRECT, "big2": 0.6})  # 140% of DRAM's roof, 1.14× the least time
    roof = roofline(partly, device=roomy, model=model)
    big2 = roof.layers.set_index("name").loc["big2"]
    assert big2["memory_roof"] == "DRAM" and big2["pct_of_roof"] == pytest.approx(100 * _ms(BIG_BYTES, 10e9) / 0.6)
    assert big2["note"] == "above DRAM's bandwidth, within it for the bytes beyond the L3 cache: the rest can be in it"
    assert any(n.startswith("Partly in the L3 cache: 1 memory-bound layers (big2)") for n in roof.notes)
    assert "roof_percent" not in _findings(partly, roof)
    faster = _run({**CORRECT, "big2": 0.9 * least})
    found = _findings(faster, roofline(faster, device=roomy, model=model))["roof_percent"]
    assert found.value == f"1: big2 ({100 * _ms(BIG_BYTES, 10e9) / (0.9 * least):.0f}%)"


def test_the_lower_bound_may_exceed_the_fastest_inference_by_the_roofs_tolerance_as_each_layer_may(tmp_path):
    """Each layer may sit up to the roof's tolerance above its roof (5%, or a measured roof's spread), so the sum of
    their limits may exceed the fastest inference by as much (torchvision ResNet-50 b1 on this CPU: lower bound 39.58
    ms against a fastest inference of 38.76 ms, 102%, every layer within its roof, was flagged at a fixed 2%)."""
    model = _relus(tmp_path)
    bound = roofline(_run(CORRECT), device=CPU, model=model).lower_bound_ms

    def flagged(over, device=CPU):
        run = _run(CORRECT).replace(latency=LatencyStats.from_times([bound / over] * 3))
        return "lower_bound" in _findings(run, roofline(run, device=device, model=model))

    assert not flagged(1.04) and flagged(1.07)
    assert not flagged(1.07, devices.Device(**{**CPU.__dict__, "tolerance_pct": 12.0}))


def test_the_cpu_peak_counts_onnx_runtimes_convolution_beside_the_matrix_product():
    """MLAS's 3×3 convolution outran its matrix product on this project's CPU (224 against 208 GFLOP/s), and
    ResNet-50's convolutions then sat at 110% of a matrix-product peak: the peak is the fastest of both."""
    a = np.ones((64, 64), np.float32)
    (matmul, matmul_flops), (conv, conv_flops) = devices._runtime_kernels(a, a)
    assert matmul_flops == 2 * 64**3 and conv_flops == 2 * 256 * 256 * 9 * 14 * 14
    assert matmul()[0].shape == (64, 64) and conv()[0].shape == (1, 256, 14, 14)
