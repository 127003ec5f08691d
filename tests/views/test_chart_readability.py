"""Per-layer charts of a 400-layer run stay readable when a browser draws them (Debian's Chromium, headless)."""

import os
from pathlib import Path

import numpy as np
import pytest

from support import REPO

from workbench.results.run import Run
from workbench.views import charts

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _need_chromium():
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(reason + " — CI must run the browser tests")
    pytest.skip(reason)


def _run_of_400_layers() -> Run:
    rng = np.random.default_rng(0)
    times = rng.gamma(0.6, 0.2, 400)
    names = [
        f"/backbone/stage{i % 7}/block{i}/conv/Conv + /backbone/stage{i % 7}/block{i}/bn/BatchNormalization + "
        f"/backbone/stage{i % 7}/block{i}/act/Relu"
        for i in range(400)
    ]  # long fused names, as TensorRT's
    layers = [
        {
            "name": n,
            "type": ("CaskConvolution", "Reformat", "PointWise")[i % 3],
            "time_ms": t,
            "activation_bytes": int(t * 1e6),
            "weight_bytes": 1000,
        }
        for i, (n, t) in enumerate(zip(names, times))
    ]
    return Run(backend="tensorrt", layers=layers, model={"name": "deep"})


def test_a_400_layer_timing_chart_has_tall_wide_bars_in_chromium(tmp_path):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    fig = charts.layer_timing(_run_of_400_layers())
    page_path = tmp_path / "timing.html"
    fig.write_html(page_path, include_plotlyjs=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_selector(".bars .point path")
            boxes = [b for b in (el.bounding_box() for el in page.query_selector_all(".bars .point path")) if b]
            plot = page.query_selector(".nsewdrag").bounding_box()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "layer_timing_400.png"), full_page=True)
        finally:
            browser.close()
    assert len(boxes) == charts.TOP_LAYERS  # the rest are summed in the subtitle, not a bar
    assert min(b["height"] for b in boxes) >= 15  # a fixed bar height, whatever the number of layers
    assert plot["width"] >= 500  # short labels leave the bars most of the width
    widest = max(b["width"] for b in boxes)
    assert widest >= 0.9 * plot["width"]  # the slowest layer sets the scale, not "other"
    assert "not drawn: the other 375 layers" in fig.layout.title.text


@pytest.mark.parametrize("count", [5, 60])
def test_chart_height_grows_with_the_bars(count):
    run = _run_of_400_layers()
    fig = charts.layer_timing(run, top=count)
    assert fig.layout.height == max(360, charts.BAR_PX * count + charts.FRAME_PX)
