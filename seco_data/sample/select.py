"""Filters and selection: pick, in every season window, the least cloudy scene that passes all limits.

For one season: candidates from ``source.search`` inside the window are ordered by scene cloud cover
(then date); those over ``scene_cloud_max`` are skipped; the others are probed with their masks
(cheap) in that order. A probe fails on coverage (valid fraction < ``coverage_min``) or patch cloud
(cloud + shadow fraction > ``patch_cloud_max``). Among those that pass, the one with the lowest patch
cloud fraction wins (ties: lower scene cloud, then earlier); probing stops early at a cloud-free
patch, which no later candidate can beat. A location is kept only if every season finds a scene;
pixels are read (and encoded) only then, for the chosen scenes. Every skipped scene and every
rejected location is counted by reason.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ..errors import SourceUnavailable, original_message, redact
from ..grid import PatchGrid
from ..recipe import Filters, Recipe
from .seasons import Window, windows
from ..sources.base import SceneRead, SceneRef, Source

log = logging.getLogger(__name__)

#: location-level rejection reasons produced here (the screen adds outside_coverage, not_land, overlap)
REASONS = ("no_scene", "scene_cloud", "coverage", "patch_cloud", "source_error")


@dataclass(frozen=True)
class Choice:
    season: int
    window: Window
    scene: SceneRef
    cloud_fraction: float
    valid_fraction: float


@dataclass
class Outcome:
    """What a worker sends back for one candidate location."""

    index: int
    grid: PatchGrid
    choices: list[Choice] = field(default_factory=list)
    reads: dict[int, SceneRead] = field(default_factory=dict)  # season -> its pixels, once every season is found
    reason: str | None = None  # None = accepted
    detail: str = ""
    skipped: Counter = field(default_factory=Counter)  # scene-level skips by reason
    patches: list[dict] = field(default_factory=list)  # ledger rows (seasons), once the files are written
    files: list[dict] = field(default_factory=list)  # compact layout: the location's files
    source_stats: Counter = field(default_factory=Counter)  # increase of source.counters

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry layer: a transient failure (:class:`SourceUnavailable`) of a source call is
    tried again at most ``retries`` times, after the server's ``Retry-After`` or an exponential
    backoff from ``base_s`` (at most ``max_s``), with jitter; retries are counted in the source's
    ``counters``."""

    retries: int = 4
    base_s: float = 1.0
    max_s: float = 60.0

    def call(self, fn, *args, counters: Counter | None = None):
        for attempt in range(self.retries + 1):
            try:
                return fn(*args)
            except SourceUnavailable as e:
                if attempt == self.retries:
                    raise
                delay = min(self.max_s, getattr(e, "retry_after", None) or self.base_s * 2**attempt)
                delay *= 1 + 0.25 * random.random()  # jitter spreads retries of many workers
                if counters is not None:
                    counters["retries"] += 1
                log.warning("transient source error (%s); retry %d/%d in %.1fs", e, attempt + 1, self.retries, delay)
                time.sleep(delay)


def choose(
    source: Source, grid: PatchGrid, window: Window, filters: Filters, skipped: Counter,
    retry: RetryPolicy = RetryPolicy(),
) -> Choice | str:
    """The chosen scene for one season, or the reason none qualifies."""
    found = retry.call(source.search, grid, window.start.date(), window.end.date(), counters=source.counters)
    scenes = sorted((s for s in found if window.contains(s.datetime)), key=lambda s: (s.cloud_cover, s.datetime))
    if not scenes:
        return "no_scene"
    best: Choice | None = None
    last_reason = "scene_cloud"
    for scene in scenes:
        if scene.cloud_cover > filters.scene_cloud_max:
            skipped["scene_cloud"] += 1
            continue
        masks = retry.call(source.read_masks, scene, grid, counters=source.counters)
        valid = masks.valid_fraction
        if valid < filters.coverage_min or valid == 0:
            skipped["coverage"] += 1
            last_reason = "coverage"
            continue
        cloud = masks.cloud_fraction
        if cloud > filters.patch_cloud_max:
            skipped["patch_cloud"] += 1
            last_reason = "patch_cloud"
            continue
        if best is None or cloud < best.cloud_fraction:
            best = Choice(window.season, window, scene, cloud, valid)
        if cloud == 0.0:
            break
    return best if best is not None else last_reason


def collect_location(
    source: Source, recipe: Recipe, index: int, grid: PatchGrid, retry: RetryPolicy = RetryPolicy()
) -> Outcome:
    """Select every season of one location and, if all are found, read their pixels."""
    before = Counter(source.counters)
    out = Outcome(index, grid)
    try:
        for w in windows(recipe.seasons, recipe.seed, index):
            got = choose(source, grid, w, recipe.filters, out.skipped, retry)
            if isinstance(got, str):
                out.reason = got
                out.detail = f"season {w.season} ({w.start:%Y-%m-%d}..{w.end:%Y-%m-%d})"
                out.choices = []
                break
            out.choices.append(got)
        if out.accepted:
            groups = recipe.band_groups
            reads = retry.call(source.read_many, [c.scene for c in out.choices], grid, groups, counters=source.counters)
            out.reads = {c.season: read for c, read in zip(out.choices, reads)}
    except SourceUnavailable as e:
        out.reason, out.detail = "source_error", redact(" ".join(original_message(str(e)).split()))
        out.choices, out.reads = [], {}
    out.source_stats = Counter({k: v - before.get(k, 0) for k, v in source.counters.items() if v != before.get(k, 0)})
    return out
