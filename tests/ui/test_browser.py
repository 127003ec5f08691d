"""A real browser: JupyterLab (headless, local port) + Debian's Chromium driven by Playwright opens the workbench
notebook, runs it and clicks through the panel as a newcomer would: Build & profile, Cancel a long build, an INT8
build and Compare, then the lossy sample (outlier_digits) in a 2-point Sweep and a Sensitivity search.

Each result area is saved as a screenshot in ``test-artifacts/`` (paths printed) and checked: no error text, not
blank (pixels), every chart's plot area drawn (DOM), no table or chart wider than its tab, no tab title or field
label cut short. Skipped only where /usr/bin/chromium is missing and this is not CI (``scripts/test.sh`` installs
Chromium with apt when it can); in CI a missing browser fails.
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


def _field(page, label: str, kind: str = "input"):
    """The visible input (or select) of the ipywidget whose description is ``label``."""
    widget = (
        page.locator(".jupyter-widgets.widget-inline-hbox")
        .filter(visible=True)
        .filter(has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$")))
    )
    return widget.first.locator(kind)


def _set(page, label: str, value: str) -> None:
    field = _field(page, label)
    field.fill(value)
    field.press("Enter")  # ipywidgets send a text field's value on Enter or blur
    field.blur()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _no_error_in(area) -> None:
    text = area.inner_text()
    for bad in ("Error:", "Traceback", "Stopped:"):
        assert bad not in text, f"{bad} shown: {text[text.index(bad) : text.index(bad) + 300]}"


def _has_content(shot: Path, min_share: float = 0.02) -> None:
    """The screenshot of an area is not blank: enough pixels differ from its most common (background) colour."""
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height)
    background = max(colours)[0]
    share = 1 - background / (image.width * image.height)
    assert share >= min_share, f"{shot.name} is blank: {share:.1%} of its pixels differ from the background"


def _check_plots(area, min_plots: int = 1) -> None:
    """Each plotly chart in ``area`` drew something in its plot area (bars, lines, points or a heatmap)."""
    from playwright.sync_api import expect

    plots = area.locator(".js-plotly-plot").filter(visible=True)
    plots.first.wait_for(timeout=30_000)  # plotly renders after the widget shows its output
    assert plots.count() >= min_plots, f"{plots.count()} charts shown, expected {min_plots}+"
    for i in range(plots.count()):
        plot = plots.nth(i)
        title = plot.locator(".gtitle").first.text_content() if plot.locator(".gtitle").count() else f"chart {i}"
        drawn = plot.locator(".cartesianlayer .trace path, .cartesianlayer .trace image")
        expect(drawn, f"'{title}' has an empty plot area").not_to_have_count(0, timeout=10_000)


def _shot(area, name: str) -> Path:
    """Screenshot of one area (scrolled into view), checked for a blank or error-showing area."""
    path = ARTIFACTS / f"workbench_{name}.png"
    area.evaluate("e => e.scrollIntoView({block: 'start'})")  # a tall area: from its top
    _no_error_in(area)
    area.screenshot(path=str(path))
    _has_content(path)
    print(f"screenshot: {path}")
    return path


def _fits(page, selector: str) -> None:
    """Nothing in the visible tab of the panel is wider than the tab: no table or chart runs past its edge."""
    overflow = page.evaluate(
        """(selector) => {
            const out = [];
            for (const panel of document.querySelectorAll(selector)) {
                if (!panel.offsetParent) continue;  // a hidden tab
                const edge = panel.getBoundingClientRect().right + 1;
                for (const el of panel.querySelectorAll('table, .js-plotly-plot')) {
                    if (!el.offsetParent) continue;
                    let box = el.getBoundingClientRect();
                    // a table inside a scrolling box is fine: the box is what must fit
                    for (let p = el.parentElement; p && p !== panel; p = p.parentElement) {
                        const style = getComputedStyle(p);
                        if (['auto', 'scroll'].includes(style.overflowX) || ['auto', 'scroll'].includes(style.overflow)) {
                            box = p.getBoundingClientRect();
                            break;
                        }
                    }
                    if (box.right > edge) out.push(`${el.tagName} ends at ${box.right}px, its tab at ${edge}px`);
                }
            }
            return out;
        }""",
        selector,
    )
    assert not overflow, overflow


def _labels_fit(page) -> None:
    """Every tab title and field label shown is whole (no "Per-layer memor", no "Workers (0 = au…")."""
    cut = page.evaluate(
        """() => [...document.querySelectorAll('.lm-TabBar-tabLabel, .widget-label')]
            .filter(l => l.offsetParent && l.scrollWidth > l.clientWidth + 1)
            .map(l => l.textContent)"""
    )
    assert not cut, f"titles or labels cut off: {cut}"


def _runs(workspace: Path) -> int:
    runs = workspace / "runs"
    return len(list(runs.iterdir())) if runs.is_dir() else 0


def test_panel_in_jupyterlab_builds_cancels_compares_sweeps_and_finds_a_plan(jupyterlab, tmp_path):
    """A newcomer's path through the panel, clicked: open it, build (charts, metrics), cancel a long build, compare
    two runs, pick the lossy sample, run a 2-point sweep and a sensitivity search; each result area is
    screenshotted and checked for blank or broken parts."""
    from playwright.sync_api import expect, sync_playwright

    url, workspace = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 2800},  # the tallest tab (Sensitivity) fits in one screenshot
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        try:
            page.goto(url)
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            # the status bar says "<kernel> | Idle" once the kernel is up and connected
            page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            # ---- open: the panel with its sample, disabled choices saying why, every tab title whole
            build = page.get_by_role("button", name="Build & profile")
            build.wait_for(timeout=60_000)
            panel = (
                page.locator(".jupyter-widgets.widget-vbox")
                .filter(has=build)
                .filter(has=page.get_by_role("tab", name="Sensitivity"))
                .last
            )
            expect(page.get_by_text("Unavailable — bf16")).to_be_visible()
            _labels_fit(page)
            _set(page, "Timed runs", "20")  # quick builds: statistics from 3 trials of 20

            # ---- build & profile: key metrics and a latency chart, then the per-layer tabs
            build.click()
            tabs = panel.locator(".jupyter-widgets.widget-tab").first
            metrics = tabs.locator("table").filter(has_text="Latency mean (ms)")
            metrics.first.wait_for(timeout=90_000)
            expect(page.get_by_text("digits_cnn fp32 onnxruntime").first).to_be_visible()
            _check_plots(tabs)
            _shot(tabs, "metrics")
            _tab(page, "Accuracy")
            expect(page.get_by_text(re.compile(r"Accuracy on 450 labelled samples"))).to_be_visible()
            _tab(page, "Per-layer time")
            timing = page.locator(".js-plotly-plot").filter(visible=True).filter(has_text="Per-layer time")
            timing.first.wait_for(timeout=30_000)
            _check_plots(tabs, 2)
            _shot(tabs, "layer_timing")
            _tab(page, "Per-layer memory")
            _check_plots(tabs)
            _shot(tabs, "layer_memory")
            _tab(page, "Layers")
            assert tabs.locator("table.wb-table tbody tr").count() > 0, "the layer table has rows"
            _fits(page, ".jupyter-widgets.widget-tab > .widget-tab-contents")
            assert _runs(workspace) == 1

            # ---- cancel a long build: it stops, says so, saves nothing, and the panel builds again
            _set(page, "Timed runs", "1000000")
            build.click()
            cancel = panel.get_by_role("button", name="Cancel").first
            expect(cancel).to_be_enabled(timeout=30_000)
            page.wait_for_timeout(1_000)
            cancel.click()
            expect(panel.get_by_text(re.compile(r"^Cancelled"))).to_be_visible(timeout=60_000)
            expect(build).to_be_enabled()
            assert _runs(workspace) == 1, "a cancelled build saved a run"
            _set(page, "Timed runs", "20")

            # ---- INT8 with the sample's calibration set, then both runs side by side
            page.get_by_role("button", name="int8", exact=True).click()
            _tab(page, "Per-layer time")
            build.click()
            int8_timing = page.locator(".js-plotly-plot").filter(has_text="digits_cnn int8 onnxruntime", visible=True)
            failed = page.locator(".widget-html").filter(has_text=re.compile(r"^Error:"))
            int8_timing.first.or_(failed.first).wait_for(timeout=120_000)  # the open tab shows the INT8 run
            assert not failed.count(), failed.first.inner_text()
            _tab(page, "Compare")
            runs = page.locator(".widget-select-multiple select")
            runs.select_option(index=[0, 1])
            page.get_by_role("button", name=re.compile(r"Compare$")).click()  # the name starts with its icon
            expect(page.get_by_text("Speed-up vs A (median, 95% CI)")).to_be_visible(timeout=30_000)
            _shot(tabs, "compare_metrics")
            _tab(page, "Latency & memory")
            _check_plots(tabs, 3)
            _tab(page, "Latency vs error")
            pareto = page.locator(".js-plotly-plot").filter(visible=True).filter(has_text="Latency vs accuracy error")
            pareto.first.wait_for(timeout=30_000)
            _check_plots(tabs)
            _shot(tabs, "compare_pareto")

            # ---- the lossy sample: its own calibration set; a 2-point sweep, then a sensitivity search
            _field(page, "Model", "select").select_option(label="outlier_digits (sample)")
            expect(page.get_by_text("outlier_digits calibration set (128 training images)").first).to_be_attached()
            _tab(page, "Sweep")
            _set(page, "Precisions", "fp32,int8")
            _set(page, "Batch sizes", "1")
            _set(page, "Workers", "1")
            page.get_by_role("button", name="Start sweep").click()
            sweep_done = tabs.get_by_text(re.compile(r"report: "))
            sweep_done.or_(tabs.get_by_text(re.compile(r"^(Stopped|Cancelled):"))).first.wait_for(timeout=180_000)
            sweep_table = tabs.locator("table").filter(has_text="run / reason")
            assert sweep_table.locator("tr").filter(has_text="done").count() == 2, sweep_table.inner_text()
            _fits(page, ".jupyter-widgets.widget-tab > .widget-tab-contents")
            _labels_fit(page)
            _shot(tabs, "sweep")
            assert _runs(workspace) == 4

            page.get_by_role("button", name="int8", exact=True).click()
            _tab(page, "Sensitivity")
            page.get_by_role("button", name=re.compile(r"Find plan$")).click()
            found = tabs.get_by_text("Done.", exact=True)
            found.or_(tabs.locator(".widget-html").filter(has_text=re.compile(r"^(Error:|Cancelled)"))).first.wait_for(
                timeout=180_000
            )
            expect(found).to_be_visible()
            _check_plots(tabs, 2)
            _labels_fit(page)
            _shot(tabs, "sensitivity")
            assert _runs(workspace) == 6, "the plan and its all-int8 run join the history"

            # ---- History lists every run and fits its tab
            _tab(page, "History")
            history = tabs.locator("table.wb-table").filter(has_text="created (UTC)")
            expect(history).to_be_visible()
            assert history.locator("tbody tr").count() == 6, history.inner_text()
            _fits(page, ".jupyter-widgets.widget-tab > .widget-tab-contents")
            _shot(tabs, "history")
            _labels_fit(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "workbench_failure.png"), full_page=True)
            print(f"screenshot of the failure: {ARTIFACTS / 'workbench_failure.png'}")
            raise
        finally:
            browser.close()
