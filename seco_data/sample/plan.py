"""``seco-data sample --plan``: what a run will cost before it runs.

A pilot collects the recipe's first few locations (the same seed draws the same first places as the
run would) into a temporary folder, exports them to shards, and measures per accepted location:
candidates drawn, requests and bytes per service, processing units where the service reports them,
files and bytes of GeoTIFFs, quicklooks and shards, and wall-clock at the configured concurrency.
The plan scales these to ``n``. Nothing is written to the output; the pilot's folder is deleted.

Service figures:

- **Sentinel Hub** charges processing units (PU) per Process API request and reports them in the
  ``x-processingunits-spent`` header: the pilot's sum, scaled. Its rate limits bound the wall-clock.
- **Earth Engine** does not document EECU per ``computePixels`` request (it reports EECU-time only
  per batch task): the plan gives requests and bytes, and the wall-clock floor of the project's quota
  (``max_concurrency`` requests in flight, ``requests_per_second``); EECU-hours are left ``None``.
- **STAC APIs**: requests and bytes (searches and COG range reads); no unit is charged.
- **sim** (the embedded default): no requests; CPU time only.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from .. import jobs
from ..catalog.layout import LEDGER
from ..recipe import Recipe, recipe_from_dict

log = logging.getLogger(__name__)

#: files of a catalog that are bookkeeping, not data (not counted as the dataset's files)
_BOOKKEEPING = (".seco", LEDGER, ".lock", ".seco-index")


def _walk(root: Path) -> dict[str, list[int]]:
    """{suffix: [files, bytes]} of the data files under ``root``."""
    out: dict[str, list[int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel != "." and rel.split(os.sep)[0].startswith(_BOOKKEEPING):
            dirnames[:] = []
            continue
        for f in filenames:
            if f.startswith(_BOOKKEEPING) or f.startswith("."):
                continue
            suffix = f.rsplit(".", 1)[-1].lower() if "." in f else ""
            e = out.setdefault(suffix, [0, 0])
            e[0] += 1
            e[1] += os.stat(os.path.join(dirpath, f)).st_size
    return out


def plan_run(recipe: Recipe, *, pilot: int = 8, workers: int | None = 1, source_factory=None,
             shard_options=None, progress: jobs.ProgressFn | None = None) -> dict:
    """The cost plan of ``recipe`` (a dict, JSON-ready), from a pilot of ``pilot`` locations."""
    from ..export.webdataset import ShardOptions, export_webdataset
    from .run import sample

    if pilot < 1:
        raise ValueError("the pilot needs at least 1 location")
    small = recipe_from_dict(recipe.to_dict() | {"source_options": recipe.source_options}, {"n": min(pilot, recipe.n)})
    stamps: list[float] = []

    def tell(p: jobs.Progress) -> None:
        accepted = int(p.counts.get("accepted", p.done))
        if len(stamps) < accepted:
            stamps.extend([time.perf_counter()] * (accepted - len(stamps)))
        if progress:
            progress(p)

    with tempfile.TemporaryDirectory(prefix="seco-plan-") as tmp:
        t0 = time.perf_counter()
        report = sample(small, Path(tmp) / "pilot", workers=workers, source_factory=source_factory, progress=tell)
        seconds = time.perf_counter() - t0
        files = _walk(Path(tmp) / "pilot")
        shards = export_webdataset(Path(tmp) / "pilot", Path(tmp) / "shards", options=shard_options or ShardOptions(),
                                   workers=1)
    got = max(1, report.accepted)
    scale = recipe.n / got
    # the pilot's steady rate: from its first collected location to its last (set-up excluded)
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) >= 3 else seconds / got
    per_location_s = steady
    stats = {k: float(v) for k, v in report.source_stats.items()}
    requests = stats.get("requests", 0.0) * scale
    service: dict = {"name": recipe.source, "requests": round(requests), "bytes": round(stats.get("bytes", 0.0) * scale),
                     "retries": round(stats.get("retries", 0.0) * scale)}
    if "processing_units" in stats or recipe.source == "sentinelhub":
        service["processing_units"] = round(stats.get("processing_units", 0.0) * scale, 1)
    if recipe.source == "earthengine":
        service["eecu_hours"] = None
        service["note"] = "Earth Engine does not document EECU per computePixels request; requests and bytes given"
    wall = per_location_s * recipe.n
    floor = _quota_floor(recipe, requests)
    if floor and floor > wall:
        wall = floor
    tif = files.get("tif", [0, 0])
    all_files = sum(v[0] for v in files.values())
    all_bytes = sum(v[1] for v in files.values())
    return {
        "recipe": recipe.name,
        "n": recipe.n,
        "pilot": {"locations": report.accepted, "candidates": report.candidates, "seconds": round(seconds, 3),
                  "source_usage": stats, "workers": workers},
        "candidates": round(report.candidates * scale),
        "requests": {recipe.source: service["requests"]},
        "service": service,
        "files": {"total": round(all_files * scale), "geotiff": round(tif[0] * scale),
                  "by_suffix": {k: round(v[0] * scale) for k, v in sorted(files.items())}},
        "bytes": {"catalog": round(all_bytes * scale), "geotiff": round(tif[1] * scale),
                  "shards": round(shards.bytes * recipe.n / max(1, shards.samples)) if shards.samples else 0},
        "wall_clock_s": round(wall, 1),
        "wall_clock_basis": ("quota" if floor and floor >= per_location_s * recipe.n else
                             f"pilot rate {per_location_s * 1000:.1f} ms/location at workers={workers or 'default'}"),
    }


def _quota_floor(recipe: Recipe, requests: float) -> float | None:
    """Seconds the service's request-rate quota needs for ``requests`` at least (None: no quota known)."""
    if recipe.source == "earthengine":
        rps = float(recipe.source_options.get("requests_per_second", 100.0))
        return requests / rps if rps > 0 else None
    return None


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def format_plan(p: dict) -> str:
    """The plan as a few lines for the terminal."""
    gb = lambda b: f"{b / 1e9:.2f} GB"  # noqa: E731
    s = p["service"]
    lines = [f"plan for {p['n']} locations of recipe {p['recipe']} (pilot: {p['pilot']['locations']} locations, "
             f"{p['pilot']['seconds']:.1f} s)",
             f"  candidates drawn: ~{p['candidates']}",
             f"  {s['name']}: ~{s['requests']} requests, {gb(s['bytes'])} downloaded"
             + (f", ~{s['processing_units']} processing units" if "processing_units" in s else "")
             + (", EECU-hours: not documented per request" if s.get("eecu_hours", 0) is None else ""),
             f"  files: ~{p['files']['total']} ({p['files']['geotiff']} GeoTIFFs); GeoTIFFs {gb(p['bytes']['geotiff'])}, "
             f"catalog {gb(p['bytes']['catalog'])}, shards {gb(p['bytes']['shards'])}",
             f"  wall-clock: ~{_duration(p['wall_clock_s'])} ({p['wall_clock_basis']})"]
    return "\n".join(lines)


__all__ = ["format_plan", "plan_run"]
