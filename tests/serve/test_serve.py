"""Serving through a real Triton (the nvidia-pytriton wheel's tritonserver, Python backend running ONNX Runtime):
the exported repository loads and answers like the run, load tests count what Triton counts, dynamic batching
batches, the configuration search picks a winner under its budget, and no server outlives its parent.

Load figures here are taken on a small CPU shared with other work, client and server on the same cores: the tests
assert counts, batching and ordering that hold under load, never a speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.serving.server import find_triton  # noqa: E402

try:
    find_triton("wheel")
except WorkbenchError as e:  # the [serve] extra is part of the test requirements: missing is a broken install
    pytest.fail(f"no tritonserver: {e}", pytrace=False)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits_run():
    """A real ONNX Runtime run of the bundled digits CNN (dynamic batch), as the CLI makes it."""
    import workbench as wb

    config = wb.BuildConfig(precision="fp32", iterations=20, warmup_ms=20, duration_s=0)
    return wb.profile(wb.load_model(wb.sample_path("digits_cnn")), backend="onnxruntime", config=config)


def _model_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> list[int]:
    from workbench.serving.server import _children_of

    found, todo = [], [pid]
    while todo:
        kids = _children_of(todo.pop())
        found += kids
        todo += kids
    return found


def test_exported_python_repository_loads_and_answers_like_the_run(digits_run, tmp_path):
    import onnxruntime as ort

    from workbench.interop.triton import export_triton
    from workbench.serving.server import TritonServer

    model_dir = export_triton(
        digits_run, tmp_path / "repo", flavour="python", preferred_batch_sizes=(4, 8), max_queue_delay_us=200
    )
    cfg = _model_config(model_dir / "config.pbtxt")  # Triton's own schema reads it
    assert (cfg.backend, cfg.max_batch_size, list(cfg.dynamic_batching.preferred_batch_size)) == ("python", 8, [4, 8])
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 200
    assert {p.name for p in (model_dir / "1").iterdir()} == {"model.py", "model.onnx", "engine.json"}

    x = np.random.default_rng(3).standard_normal((3, 1, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(digits_run.model["path"], providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    with TritonServer(tmp_path / "repo") as server:
        server.wait_ready([model_dir.name])
        import tritonclient.grpc as grpc

        client = grpc.InferenceServerClient(server.grpc_url)
        tensor = grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer(model_dir.name, [tensor]).as_numpy("logits")
        client.close()
        pid, port = server.process.pid, server.http_port
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.shape == (3, 10) and not np.allclose(got, got[0])  # three different samples, not one repeated
    assert not _alive(pid)
    with pytest.raises(OSError):  # the port is free again: nothing listens
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_load_test_counts_equal_tritons_and_dynamic_batching_batches(digits_run):
    import workbench as wb

    with wb.serve(digits_run, max_queue_delay_us=2000) as served:
        assert served.config.dynamic_batching and served.config.max_batch_size == 8
        run = served.load((1, 8), duration_s=1.5)
        stubs = _descendants(served.server.process.pid)
    levels = {lv.concurrency: lv for lv in run.serving.levels}
    for lv in levels.values():
        assert lv.requests > 10 and lv.errors == 0
        assert lv.requests == lv.server_requests == lv.metrics_requests, lv  # client = statistics = Prometheus
        assert lv.p50_ms <= lv.p90_ms <= lv.p95_ms <= lv.p99_ms
        assert lv.throughput_rps == pytest.approx(lv.requests / lv.seconds)
    assert levels[1].batch == 1.0  # one request in flight: nothing to batch
    assert levels[8].batch > 1.0, levels[8]  # eight in flight and a 2 ms window: Triton batched them
    assert levels[8].server_executions < levels[8].server_inferences
    assert run.serving.counts_agree and run.source == "serve" and not run.findings
    assert run.latency.throughput_qps == max(lv.throughput_rps for lv in levels.values())
    assert stubs and not any(_alive(p) for p in stubs)


def test_without_dynamic_batching_each_request_runs_alone(digits_run):
    import workbench as wb

    with wb.serve(digits_run, dynamic_batching=False) as served:
        run = served.load((4,), duration_s=1.0)
    (level,) = run.serving.levels
    assert not run.serving.config.dynamic_batching
    assert level.server_executions == level.server_inferences == level.requests  # batch exactly 1


def test_serving_run_is_kept_in_the_history_and_reads_back(digits_run, tmp_path):
    import workbench as wb

    with wb.serve(digits_run) as served:
        run = served.load((2,), duration_s=0.8, protocol="http")
    assert run.serving.generator == "tritonclient http.aio" and run.serving.counts_agree
    stored = wb.Store(tmp_path / "ws").add(run)
    back = wb.load_run(stored.directory)
    assert back.serving == run.serving
    assert back.source == "serve" and back.latency == run.latency


def test_search_picks_the_fastest_configuration_within_the_budget(digits_run, tmp_path):
    import workbench as wb
    from workbench.analysis.serving import best_under
    from workbench.results.serving import ServingConfig

    configs = [
        ServingConfig(max_batch_size=8, dynamic_batching=False),
        ServingConfig(max_batch_size=8, dynamic_batching=True, preferred_batch_sizes=(8,), max_queue_delay_us=1000),
    ]
    found = wb.search_serving(
        digits_run, p99_ms=1000, repository=tmp_path / "repo", configs=configs, concurrency=(1, 8), duration_s=1.0
    )
    assert len(found.runs) == 2 and found.winner is not None
    best = best_under(found.points, 1000)
    assert found.winner.id == best["run"] and found.winner_concurrency == best["concurrency"]
    assert found.winner.serving.winner and sum(r.serving.winner for r in found.runs) == 1
    assert best["throughput_rps"] == found.points["throughput_rps"].max()  # a generous budget: the fastest point
    cfg = _model_config(found.config_path)  # the winner's configuration, in the repository
    assert cfg.HasField("dynamic_batching") == found.winner.serving.config.dynamic_batching
    assert found.points["front"].any() and found.points["counts_agree"].all()

    fig = wb.charts.serving_latency_throughput(found.runs, p99_budget_ms=1000)
    names = [t.name for t in fig.data]
    assert [r.serving.config.label for r in found.runs] == names[:2] and "Pareto front" in names
    assert any(n.startswith("best within budget") for n in names)

    nothing = wb.search_serving(digits_run, p99_ms=0.001, configs=configs[:1], concurrency=(1,), duration_s=0.5)
    assert nothing.winner is None and "no configuration kept p99" in nothing.summary()


def _as_typed_at_a_terminal() -> None:
    # Ctrl-C reaches a command typed at a terminal. A test runner started as `… &` by a shell without job control
    # inherits SIGINT ignored (POSIX: background jobs must not see the terminal's Ctrl-C) and passes that on; the
    # command rightly keeps it, so the user's case is set up here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_as_typed_at_a_terminal,
        **kwargs,
    )


def _wait_ready(process) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Serving until Ctrl-C"):
            return lines
    raise AssertionError("".join(lines))


@pytest.fixture(scope="module")
def stored_digits(digits_run):
    import workbench as wb

    return wb.Store().add(digits_run)


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_server_or_stub_survives_its_command(stored_digits, how):
    """Ctrl-C stops the server cleanly; kill -9 of the command leaves nothing either (the kernel kills the server
    with its parent, and the Python stubs follow their server)."""
    process = _cli("serve", stored_digits.id)
    try:
        lines = _wait_ready(process)
        assert lines[0].startswith("READY: model 'digits_cnn'")
        servers = [p for p in _descendants(process.pid) if b"tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(servers) == 1
        family = _descendants(process.pid)
        process.send_signal(getattr(signal, how))
        process.wait(30)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in family if _alive(p)], f"left running after {how}"
        assert process.returncode == (130 if how == "SIGINT" else -signal.SIGKILL)
        from workbench.serving.server import remove_orphan_folders

        remove_orphan_folders()  # what the next server start does: a killed command's temporary folders go too
        assert not list(Path(tempfile.gettempdir()).glob(f"workbench-*-{process.pid}-*"))
    finally:
        if process.poll() is None:
            process.kill()


def test_no_server_survives_a_killed_notebook_kernel(stored_digits):
    """A notebook serves a run, then its kernel is killed (kill -9, as a crash or a forced restart does): the server
    and its stubs go with it."""
    from jupyter_client import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "PYTHONPATH": str(REPO)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        code = f"import workbench as wb\nserved = wb.serve(wb.Store().get({stored_digits.id!r}))\nprint('pid', served.server.process.pid)"
        reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        kernel = manager.provisioner.process.pid
        family = _descendants(kernel)
        assert any(b"tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes() for p in family if _alive(p))
        os.kill(kernel, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in family if _alive(p)], "the server outlived its kernel"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_cli_load_reports_levels_and_counts(stored_digits):
    process = _cli("serve", stored_digits.id, "--load", "--concurrency", "1,4", "--duration", "1")
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 0, out
    levels = [ln for ln in out.splitlines() if ln.strip().startswith("c=")]
    assert len(levels) == 2 and all("req/s" in ln and "p99" in ln for ln in levels)
    assert all("client" in ln and "= Triton" in ln and "= metrics" in ln for ln in levels), out


def test_bad_requests_and_settings_are_one_line_errors(digits_run):
    import workbench as wb
    from workbench.serving.load import parse_concurrency

    with pytest.raises(WorkbenchError, match="out of range"):
        parse_concurrency("0,4")
    with pytest.raises(WorkbenchError, match="not a list of integers"):
        parse_concurrency("1,x")
    with pytest.raises(WorkbenchError, match="Preferred batch sizes"):
        wb.export_triton(digits_run, "/nonexistent", flavour="python", preferred_batch_sizes=(16,))
    with wb.serve(digits_run) as served:
        with pytest.raises(WorkbenchError, match="Triton refused the request"):
            served.infer({"input": np.zeros((1, 1, 4, 4), np.float32)})


def test_perf_analyzer_csv_reads_into_levels():
    """perf_analyzer -f writes microseconds per stage and percentile; the import keeps them as milliseconds."""
    from workbench.serving.load import read_perf_analyzer_csv

    text = (
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,500.5,10,200,50,20,1500,30,5,1800,2000,2100,2500\n"
        "4,1200,12,300,400,25,2600,35,6,3300,3900,4100,4800\n"
    )
    levels = read_perf_analyzer_csv(text)
    assert [lv.concurrency for lv in levels] == [1, 4]
    assert levels[1].throughput_rps == 1200 and levels[1].p99_ms == 4.8 and levels[1].queue_ms == 0.4
    assert levels[0].mean_ms == pytest.approx((10 + 200 + 50 + 20 + 1500 + 30 + 5) / 1000)
    assert not any(lv.counts_agree for lv in levels)  # perf_analyzer counts nothing to compare
    with pytest.raises(WorkbenchError, match="Not a perf_analyzer CSV"):
        read_perf_analyzer_csv("a,b\n1,2\n")


def test_prometheus_counter_sums_versions_of_one_model():
    from workbench.serving.load import prometheus_counter

    text = (
        "# HELP nv_inference_request_success Number of successful inference requests\n"
        'nv_inference_request_success{model="m",version="1"} 12\n'
        'nv_inference_request_success{model="m",version="2"} 3\n'
        'nv_inference_request_success{model="other",version="1"} 99\n'
    )
    assert prometheus_counter(text, "nv_inference_request_success", "m") == 15
    assert prometheus_counter(text, "nv_inference_request_success", "absent") is None


@pytest.mark.corpus
@pytest.mark.parametrize("key", ["ppocr_cls", "magika"])
def test_real_models_serve_and_answer_like_their_runs(key):
    """Trained models the workbench has never seen: a Paddle2ONNX CNN with an unnamed -1 batch, and a Keras byte
    classifier whose integer inputs must stay in their range — served, answered like ONNX Runtime, counted."""
    import onnxruntime as ort
    from real_models import real_model

    import workbench as wb

    path = real_model(key)
    config = wb.BuildConfig(precision="fp32", iterations=5, warmup_ms=0, duration_s=0, trials=1)
    run = wb.profile(wb.load_model(path), backend="onnxruntime", config=config)
    with wb.serve(run) as served:
        outputs = served.infer()
        load = served.load((1, 4), duration_s=1.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, served.inputs)))
    assert outputs.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert load.serving.counts_agree and all(lv.requests > 0 for lv in load.serving.levels)


def test_a_level_is_stable_once_its_p99_and_throughput_stop_moving():
    """Stability reads the level's own p99 and throughput (everything so far) at the last three window ends."""
    from workbench.serving.load import LoadSettings, _stable

    settings = LoadSettings(duration_s=10, window_s=1.0)
    steady = [(t / 200, 2.0 + (t % 100) / 100) for t in range(1000)]  # 200 req/s, the same spread every window
    assert not _stable(steady, 0.0, settings, 2)  # fewer than three windows: not yet
    assert _stable(steady, 0.0, settings, 5)
    slowing = [(t / 200, 2.0 * (1 + t // 200)) for t in range(1000)]  # every window slower than the last
    assert not _stable(slowing, 0.0, settings, 5)
