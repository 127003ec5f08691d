"""A real browser: JupyterLab (headless, local port) + Debian's Chromium driven by Playwright opens the workbench
notebook, runs it, clicks Build & profile, and waits for the plotly charts and the key metrics.

Saves a screenshot to ``test-artifacts/`` and prints its path. Skipped only where /usr/bin/chromium is missing and
this is not CI (``scripts/test.sh`` installs Chromium with apt when it can); in CI a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOK = "01_workbench.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: JupyterLab pop-ups that would cover the panel in the screenshot.
DISABLED_LAB_PLUGINS = {"@jupyterlab/apputils-extension:announcements": True}


def _need_chromium():
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(reason + " — CI must run the browser test")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of the notebook, with its own config, workspace and run store; yields its URL."""
    _need_chromium()
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": DISABLED_LAB_PLUGINS}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "WORKBENCH_WORKSPACE": str(tmp_path / "workspace"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            "--LabApp.extension_manager=readonly",  # no extension look-ups on the network
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(base, token, server, tmp_path / "jupyterlab.log")
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}", tmp_path / "workspace"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for_server(base: str, token: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def test_build_in_jupyterlab_shows_charts_and_metrics(jupyterlab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, workspace = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    shots = [ARTIFACTS / f"workbench_{what}.png" for what in ("metrics", "layer_timing", "compare_pareto")]
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1800},
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            page.goto(url)
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            # the status bar says "<kernel> | Idle" once the kernel is up and connected
            page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            build = page.get_by_role("button", name="Build & profile")
            build.wait_for(timeout=60_000)
            expect(page.get_by_text("Unavailable — bf16")).to_be_visible()  # disabled choices say why
            build.click()

            metrics = page.locator(".jupyter-widgets table").filter(has_text="Latency mean (ms)")
            metrics.first.wait_for(timeout=90_000)
            plot = page.locator(".js-plotly-plot").first
            plot.wait_for(timeout=30_000)
            expect(page.get_by_text("digits_cnn fp32 onnxruntime").first).to_be_visible()
            plot.scroll_into_view_if_needed()
            page.screenshot(path=str(shots[0]))

            page.get_by_role("tab", name="Accuracy").click()
            expect(page.get_by_text(re.compile(r"Accuracy on 450 labelled samples"))).to_be_visible()
            page.get_by_role("tab", name="Per-layer time").click()
            timing = page.locator(".js-plotly-plot").filter(has_text="Per-layer time")
            timing.first.wait_for(timeout=30_000)
            assert timing.first.locator(".bars path").count() > 0, "the per-layer chart has bars"
            timing.first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots[1]))

            # INT8 with the sample's calibration set, then both runs side by side
            page.get_by_role("button", name="int8", exact=True).click()
            build.click()
            int8_timing = page.locator(".js-plotly-plot").filter(has_text="digits_cnn int8 onnxruntime", visible=True)
            failed = page.locator(".widget-html").filter(has_text=re.compile(r"^Error:"))
            int8_timing.first.or_(failed.first).wait_for(timeout=120_000)  # the open tab shows the INT8 run
            assert not failed.count(), failed.first.inner_text()
            page.get_by_role("tab", name="Compare", exact=True).click()
            runs = page.locator(".widget-select-multiple select")
            runs.select_option(index=[0, 1])
            page.get_by_role("button", name=re.compile(r"Compare$")).click()  # the name starts with its icon
            expect(page.get_by_text("Speed-up vs A (median, 95% CI)")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Latency vs error").click()
            pareto = page.locator(".js-plotly-plot").filter(has_text="Latency vs accuracy error")
            pareto.first.wait_for(timeout=30_000)
            pareto.first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots[2]))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "workbench_failure.png"))
            print(f"screenshot of the failure: {ARTIFACTS / 'workbench_failure.png'}")
            raise
        finally:
            browser.close()
    for shot in shots:
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    assert len(list((workspace / "runs").iterdir())) == 2, "both builds were saved in the run store"
