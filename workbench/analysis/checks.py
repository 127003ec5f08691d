"""Self-checks that need the roofline: the hardware limit of a run held against what it measured.

The checks of :mod:`workbench.results.checks` need only the Run and run when it is made or loaded. These need
:func:`workbench.analysis.roofline.roofline` (the work of each layer and the device's roof), so they live here and
are run by ``pipeline.profile`` (a compiled run has no times to hold against a roof), the CLI's ``import`` and
``roofline`` and the views (report, notebook display, panel), which add them to ``Run.findings`` with
:func:`checked`. They use only the roofline's public figures, whoever computes them:

=====================  ===========================================================================================
``lower_bound``        the lower bound (sum of per-layer limits) ≤ the fastest measured inference (none may beat
                       the hardware); else the device's roof or the counted work is wrong, and the finding says
                       which (:func:`_blame`): the roof when most of the known time runs above it, else the work
                       counted (or the time measured) for the few layers above the roof the others respect; when
                       no layer is above its roof, the latency and the layer times disagree (another batch or
                       engine). A lower bound of NaN (no layer's work known) is no finding.
``roof_percent``       no layer above 100% of the roof that applies to it (the cache roof where its bytes fit in
                       the device's last-level cache, else DRAM's; the peak for compute-bound layers) by more than
                       the roof's tolerance (``Device.tolerance_pct``: 5%, or a measured roof's spread); the
                       finding names the same cause
=====================  ===========================================================================================

A run the roofline cannot place (no per-layer times, a GPU the device table does not know) is not applicable:
nothing is claimed about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..errors import WorkbenchError
from ..results.checks import Check, Finding, evaluate
from .roofline import Roofline, above_roof, roofline

#: The roof itself is suspect when the layers above it hold at least this share of the time with known work.
ROOF_SUSPECT_SHARE = 0.5


def _above(roof: Roofline) -> pd.DataFrame:
    return above_roof(roof.layers, roof.device)


def _roof_text(roof: Roofline) -> str:
    """The roof's figures and where they come from (a CPU's: its measured rates, when, and the load)."""
    dev = roof.device
    cache = (
        f", {dev.cache_name} {dev.cache_bandwidth / 1e9:.4g} GB/s for layers moving ≤ {dev.cache_bytes / 2**20:g} MiB"
        if dev.cache_bandwidth and dev.cache_bytes
        else ""
    )
    if dev.kind != "cpu":
        return f"{dev.name}'s published figures ({dev.source}){cache}"
    return (
        f"roof of {dev.name} (peak {dev.peaks['fp32'] / 1e9:.4g} GFLOP/s, DRAM {dev.bandwidth / 1e9:.4g} GB/s{cache}, "
        f"measured {dev.measured or 'earlier'})"
    )


def _kinds(roof: Roofline, above: pd.DataFrame) -> str:
    """How many layers are above which roof: "2 compute-bound layers above the measured peak; 1 memory-bound layer
    above the L3 cache roof (its bytes fit in the 32 MiB cache)"."""
    dev = roof.device
    figures = "measured" if dev.kind == "cpu" else "published"
    memory = above[above["bound"] == "memory"]
    cached = memory[memory["memory_roof"] != "DRAM"]
    beyond = memory[memory["memory_roof"] == "DRAM"]
    cache = f"{dev.cache_bytes / 2**20:g} MiB {dev.cache_name}" if dev.cache_bytes else ""
    parts = [
        (above[above["bound"] == "compute"], f"compute-bound, above the {figures} peak"),
        (cached, f"memory-bound, above the {dev.cache_name} roof (their bytes fit in the {cache})"),
        (
            beyond,
            "memory-bound, above the DRAM roof ("
            + (f"each moves more than the {cache} holds" if cache else "the cache of this device is not known")
            + ")",
        ),
    ]
    return "; ".join(f"{len(rows)} {what}" for rows, what in parts if len(rows))


def _blame(roof: Roofline, above: pd.DataFrame) -> tuple[str, str]:
    """(cause, fix) of layers above the roof that applies to them (the cache roof where their bytes fit in the
    cache, else DRAM's; the peak for compute-bound ones). When they hold most of the time with known work, the roof
    is what is low (a measured CPU roof: measured under load; a GPU: another device's figures); when a few layers
    beat a roof the others respect, those layers' figures are wrong: their counted work is too high or their time
    too short — unless the roof was measured while other processes held the cores (``Device.contended``), which
    leaves the roof in doubt too."""
    if not len(above):
        return (
            "every layer runs within its roof, so the measured latency disagrees with the layer times (they sum "
            f"to {roof.layer_time_ms:.4g} ms): the latency was measured at another batch or on another engine",
            "profile again and read the latency and the layer times of one run",
        )
    dev = roof.device
    known = roof.known_time_ms
    share = float(above["time_ms"].sum()) / known if known else 0.0
    kinds = _kinds(roof, above)
    if share >= ROOF_SUSPECT_SHARE:
        fix = (
            "measure the roof again on an idle machine (workbench roofline --remeasure); it is kept per machine "
            "and used until then"
            if dev.kind == "cpu"
            else "check the device's figures: pass the GPU the run was on (--device NAME)"
        )
        return (
            f"the device's roof is too low: {kinds} ({100 * share:.0f}% of the time with known work; "
            f"{_roof_text(roof)})",
            fix,
        )
    types = ", ".join(above["type"].astype(str).value_counts().index[:3])
    if dev.contended:  # a roof measured while other processes held the cores may be low: it is not ruled out
        return (
            f"these layers' figures or the roof: {kinds}, {100 * share:.0f}% of the time with known work, while "
            f"the other layers respect the same roof ({_roof_text(roof)}), but the roof was measured while other "
            f"processes held the cores ({dev.contended}): the work counted for {types} is too high, their measured "
            "time too short, or the roof low",
            "measure the roof again on an idle machine (workbench roofline --remeasure); if they stay above it, "
            f"check the work the roofline counts for {types} (workbench roofline RUN lists each layer's FLOPs, "
            "bytes and roof)",
        )
    return (
        f"the figures of these layers, not the roof: {kinds}, {100 * share:.0f}% of the time with known work, "
        f"while the other layers respect the same roof ({_roof_text(roof)}): the work counted for {types} is "
        "too high or their measured time too short",
        f"check the work the roofline counts for {types} (workbench roofline RUN lists each layer's FLOPs, bytes "
        "and roof) and profile again",
    )


@dataclass(frozen=True)
class Held:
    """A run held against its roofline: what the roofline's checks read."""

    run: object
    roof: Roofline


def _fastest_ms(held: Held) -> float | None:
    """The fastest measured inference (no inference may beat the limit), else the roofline's measured latency."""
    lat = held.run.latency
    if lat is not None and lat.min_ms == lat.min_ms and lat.min_ms > 0:
        return lat.min_ms
    return held.roof.measured_ms


def _lower_bound(held: Held):
    roof, fastest = held.roof, _fastest_ms(held)
    if not fastest or not roof.lower_bound_ms > 0:  # NaN: no layer's work is known, nothing to hold
        return None
    # each layer may sit within the roof's tolerance (timer noise, a measured roof's spread): so may their sum
    if roof.lower_bound_ms <= fastest * (1.0 + roof.device.tolerance_pct / 100.0):
        return ()
    cause, fix = _blame(roof, _above(roof))
    return (
        Finding(
            "lower_bound",
            "warning",
            "Lower bound (ms)",
            f"{roof.lower_bound_ms:.4g}",
            f"≤ the fastest measured inference {fastest:.4g} ms (it is {100 * roof.lower_bound_ms / fastest:.0f}% "
            "of it: no inference runs faster than the hardware allows)",
            cause,
            fix,
        ),
    )


def _roof_percent(held: Held):
    roof = held.roof
    if roof.layers["pct_of_roof"].isna().all():
        return None
    above = _above(roof).sort_values("pct_of_roof", ascending=False)
    if not len(above):
        return ()
    shown = ", ".join(f"{n} ({p:.0f}%)" for n, p in zip(above["name"].astype(str)[:3], above["pct_of_roof"][:3]))
    cause, fix = _blame(roof, above)
    return (
        Finding(
            "roof_percent",
            "warning",
            "Layers above the roof",
            f"{len(above)}: {shown}{'…' if len(above) > 3 else ''}",
            "≤ 100% of the roof (no layer runs faster than the hardware allows)",
            cause,
            fix,
        ),
    )


ROOFLINE_CHECKS: tuple[Check, ...] = (
    Check("lower_bound", "lower bound", "lower bound ≤ measured latency", _lower_bound),
    Check("roof_percent", "% of roof", "every layer ≤ 100% of its roof, or a named cause", _roof_percent),
)


def roofline_of(run) -> Roofline | None:
    """The run's roofline, or None where it has none (no per-layer times, a device the table does not know)."""
    layers = run.layers
    if not run.timed or not len(layers) or layers["time_ms"].isna().all():
        return None
    try:
        return roofline(run)
    except WorkbenchError:
        return None


def roofline_evaluations(run, roof: Roofline | None) -> dict[str, tuple[Finding, ...] | None]:
    """Each roofline check's findings on ``run`` by key (``None``: no roofline, or it lacks the figures)."""
    if roof is None:
        return {c.key: None for c in ROOFLINE_CHECKS}
    return evaluate(Held(run, roof), ROOFLINE_CHECKS)


def checked(run, roof: Roofline | None = None):
    """``run`` with the roofline's findings in ``Run.findings`` (``roof``: one already computed for it)."""
    roof = roof if roof is not None else roofline_of(run)
    found = tuple(f for v in roofline_evaluations(run, roof).values() for f in v or ())
    keys = {c.key for c in ROOFLINE_CHECKS}
    return run.replace(findings=tuple(f for f in run.findings if f.check not in keys) + found)


__all__ = ["ROOFLINE_CHECKS", "checked", "roofline_evaluations", "roofline_of"]
