"""The serving configuration search (what Triton's Model Analyzer did): serve the run under each candidate model
configuration — max batch size, dynamic batching (preferred sizes, max queue delay), instance count — load-test each
at the same concurrencies, and pick the configuration and concurrency with the highest throughput whose p99 stays
within a budget. Every configuration's result is a serving Run (``Run.serving``); the winner's ``config.pbtxt`` (with
its model) is written into the repository given."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from ..analysis.serving import best_under, serving_points
from ..errors import Cancelled, WorkbenchError
from ..progress import Progress, ensure
from ..results.run import Run
from ..results.serving import ServingConfig
from .load import LoadSettings, parse_concurrency


def candidate_configs(
    max_batch_sizes=(8,), queue_delays_us=(0, 500), instances=(1, 2), *, baseline: bool = True
) -> list[ServingConfig]:
    """Every combination with dynamic batching on (preferred size: the max batch size), plus — ``baseline`` — the
    first max batch size with dynamic batching off and one instance, which dynamic batching is measured against."""
    configs = []
    if baseline:
        configs.append(ServingConfig(max_batch_size=int(max_batch_sizes[0]), dynamic_batching=False, instances=1))
    for mbs, delay, count in itertools.product(max_batch_sizes, queue_delays_us, instances):
        if int(mbs) < 1 or int(delay) < 0 or int(count) < 1:
            raise WorkbenchError(
                f"Search values out of range (max batch {mbs}, delay {delay} µs, instances {count}): use max batch ≥ 1, "
                "delay ≥ 0, instances ≥ 1."
            )
        configs.append(
            ServingConfig(
                max_batch_size=int(mbs),
                dynamic_batching=True,
                preferred_batch_sizes=(int(mbs),),
                max_queue_delay_us=int(delay),
                instances=int(count),
            )
        )
    return configs


@dataclass(frozen=True)
class SearchResult:
    """Each configuration's serving Run, every (configuration, concurrency) point with its Pareto front, and the
    winner under the p99 budget (None when no point met it)."""

    runs: tuple[Run, ...]
    points: pd.DataFrame
    p99_budget_ms: float
    winner: Run | None
    winner_concurrency: int | None
    config_path: Path | None  # the winner's config.pbtxt in the repository

    def summary(self) -> str:
        if self.winner is None:
            fastest = self.points["p99_ms"].min() if len(self.points) else float("nan")
            return f"no configuration kept p99 within {self.p99_budget_ms:g} ms (lowest p99 {fastest:.3g} ms)"
        level = next(lv for lv in self.winner.serving.levels if lv.concurrency == self.winner_concurrency)
        return (
            f"winner: {self.winner.serving.config.label} at concurrency {level.concurrency}: "
            f"{level.throughput_rps:.1f} requests/s, p99 {level.p99_ms:.3g} ms ≤ {self.p99_budget_ms:g} ms, "
            f"achieved batch {level.batch:.2f}"
        )


def search_serving(
    run: Run,
    *,
    p99_ms: float,
    repository=None,
    configs: list[ServingConfig] | None = None,
    concurrency=(1, 4, 16),
    duration_s: float = 3.0,
    protocol: str = "grpc",
    triton: str = "auto",
    progress: Progress | None = None,
) -> SearchResult:
    """Serve ``run`` under each of ``configs`` (default :func:`candidate_configs`), load-test each at
    ``concurrency``, and return the highest-throughput point with p99 ≤ ``p99_ms``. ``repository``: where the
    winner's model and ``config.pbtxt`` are written (nothing written when None). Cancel through ``progress``."""
    from . import serve

    if not p99_ms > 0:
        raise WorkbenchError(f"p99 budget {p99_ms} ms is out of range: pass --p99-ms with a positive value.")
    configs = configs or candidate_configs()
    levels = parse_concurrency(concurrency)
    progress = ensure(progress)
    search = uuid.uuid4().hex[:8]
    settings = LoadSettings(duration_s=duration_s, window_s=min(1.0, duration_s / 3), warmup_s=min(0.5, duration_s / 4))
    runs, flavour = [], "python"
    for i, config in enumerate(configs):
        progress.step(f"Serving search: {config.label}", i, len(configs))
        if progress.cancelled:
            raise Cancelled("Serving search cancelled.")
        with serve(run, triton=triton, **_export_options(config)) as served:
            load = served.load(levels, protocol=protocol, settings=settings, progress=progress)
            flavour = served.flavour
        runs.append(load.replace(serving=replace(load.serving, p99_budget_ms=p99_ms, search=search)))
    progress.step("Serving search", len(configs), len(configs))
    points = serving_points(runs)
    best = best_under(points, p99_ms)
    winner = concurrency_of = path = None
    if best is not None:
        index = next(i for i, r in enumerate(runs) if r.id == best["run"])
        runs[index] = runs[index].replace(serving=replace(runs[index].serving, winner=True))
        winner, concurrency_of = runs[index], int(best["concurrency"])
        if repository is not None:
            path = write_winner(run, winner.serving.config, repository, flavour=flavour)
    return SearchResult(tuple(runs), points, float(p99_ms), winner, concurrency_of, path)


def _export_options(config: ServingConfig) -> dict:
    """export_triton's keywords for ``config`` (its kind is the server's to choose)."""
    return {key: value for key, value in asdict(config).items() if key != "kind"}


def write_winner(run: Run, config: ServingConfig, repository, *, flavour: str = "python") -> Path:
    """Export ``run`` into ``repository`` with the winning configuration; the path of its ``config.pbtxt``."""
    from ..interop.triton import export_triton

    model_dir = export_triton(run, repository, kind=config.kind, flavour=flavour, **_export_options(config))
    return model_dir / "config.pbtxt"
