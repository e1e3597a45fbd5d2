"""``sources check``: is a source usable? Credentials, reachability, and a one-patch dry run.

Steps run in order and stop at the first failure: build the source (configuration, credentials
present), ``source.check()`` (credentials accepted, endpoint reachable, facts such as the project),
search one season window at one location, read that scene's masks, read its pixels. Nothing is
written anywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import SecoError, SourceError
from ..grid import PatchGrid
from ..recipe import Recipe
from .seasons import windows


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float
    error: SecoError | None = field(default=None, repr=False)


def check_source(recipe: Recipe, lon: float | None = None, lat: float | None = None) -> list[Step]:
    """Run the checks for ``recipe.source``; the location defaults to the recipe's first candidate."""
    from .locations import make_sampler
    from ..sources import get_source

    steps: list[Step] = []
    state: dict = {}

    def run(name, fn):
        t0 = time.perf_counter()
        try:
            detail = fn()
        except SecoError as e:
            steps.append(Step(name, False, e.one_line(), time.perf_counter() - t0, e))
            return False
        except (ValueError, OSError) as e:  # a source's own validation or I/O, not yet mapped
            err = SourceError(f"{type(e).__name__}: {e}")
            steps.append(Step(name, False, err.one_line(), time.perf_counter() - t0, err))
            return False
        steps.append(Step(name, True, detail, time.perf_counter() - t0))
        return True

    def build():
        state["source"] = get_source(recipe.source, recipe.product, **recipe.source_options)
        return f"{recipe.source} ({recipe.product})"

    def credentials():
        facts = state["source"].check() or {}
        return ", ".join(f"{k}={v}" for k, v in facts.items()) or "ok"

    def search():
        if lon is None or lat is None:
            c = make_sampler(recipe.locations, recipe.seed).draw(0)
            where = (c.lon, c.lat)
        else:
            where = (lon, lat)
        grid = state["grid"] = PatchGrid.around(*where, recipe.patch_size_m)
        w = windows(recipe.seasons, recipe.seed, 0)[0]
        found = [s for s in state["source"].search(grid, w.start.date(), w.end.date()) if w.contains(s.datetime)]
        if not found:
            raise SourceError(
                f"no scene at ({where[0]:.4f}, {where[1]:.4f}) between {w.start:%Y-%m-%d} and {w.end:%Y-%m-%d}",
                hint="pass --lon/--lat of a place the source covers",
            )
        state["scene"] = min(found, key=lambda s: s.cloud_cover)
        return (f"{len(found)} scenes at ({where[0]:.4f}, {where[1]:.4f}) in {w.start:%Y-%m-%d}..{w.end:%Y-%m-%d}; "
                f"least cloudy {state['scene'].scene_id} ({state['scene'].cloud_cover:.1f} %)")

    def masks():
        m = state["source"].read_masks(state["scene"], state["grid"])
        return f"cloud+shadow {m.cloud_fraction:.3f}, valid {m.valid_fraction:.3f}"

    def pixels():
        r = state["source"].read(state["scene"], state["grid"], recipe.band_groups)
        return ", ".join(f"{res} m: {a.shape[0]}x{a.shape[1]}x{a.shape[2]} {a.dtype}" for res, a in sorted(r.pixels.items()))

    for name, fn in (("configuration", build), ("credentials", credentials), ("search", search),
                     ("masks", masks), ("pixels", pixels)):
        if not run(name, fn):
            break
    if "source" in state:
        state["source"].close()
    return steps
