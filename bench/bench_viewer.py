"""Benchmark of the catalog viewer at 10,000, 100,000 and 1,000,000 locations (issue 13: "the map of
1M locations loads in a browser"; bounded memory).

How the catalogs are made: a real 2-location catalog is sampled from the simulator with the
``seco-1m`` recipe (5 seasons, 12 bands; ``seco-data sample --source sim``), and its first
``items.parquet`` row is the template of every row of a synthetic index written with pyarrow, row
group by row group (as many rows per group as a catalog part holds, like ``catalog rebuild``): new
location ids (with gaps, as rejections leave), points on land, place names (10,000 of them), and per
season dates inside the recipe's windows, scene ids, scene cloud, patch cloud and valid fraction;
every asset href rewritten; everything else (band metadata, checksums, geometry) the template's.
No GeoTIFF is written: the viewer only links to them. A ledger holding rejected candidates (half as
many as locations, by reason) is written beside it, since the map shows them too. Either layout
(``--layout``): compact (one row per location, ``seco:seasons``) or per-patch (one row per season,
with ``self`` links).

What is measured, per size (:func:`measure_viewer`, which ``bench/bench_scale.py`` calls on any
catalog folder):

- ``CatalogData`` in a fresh subprocess: build time, then its payloads (``meta.js``, ``map.js``, one
  location chunk) with their times and bytes; peak RSS (``ru_maxrss``) after imports and at the end;
- headless Chromium against ``seco-data catalog serve``'s server: the map page from navigation
  start until its points are drawn (``window.__secoReady``), the first load (the server reads the
  index) and the median of the next loads; one draw alone; a location page.

Usage: python bench/bench_viewer.py [--sizes 10000,100000,1000000] [--layout compact] [--runs 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REASONS = {"scene_cloud": 0.45, "not_land": 0.2, "patch_cloud": 0.15, "coverage": 0.1, "overlap": 0.1}


# -- the synthetic catalog ----------------------------------------------------------------------


def template_catalog(out: Path, layout: str = "compact") -> Path:
    """A real 2-location catalog of the seco-1m recipe from the simulator (the rows to copy)."""
    from seco_data.recipe import load_recipe
    from seco_data.sample.run import sample

    if not (out / "items.parquet").exists():
        sample(load_recipe("seco-1m", {"n": 2, "source": "sim", "layout": layout}), out, workers=1)
    return out


def _points_on_land(rng, n: int) -> np.ndarray:
    """(n, 2) lon, lat: uniform on the sphere between 60 S and 75 N, kept where the land mask says land."""
    from seco_data.landmask import is_land

    out, have = np.empty((n, 2)), 0
    while have < n:
        lon = rng.uniform(-180, 180, 2 * n)
        lat = np.degrees(np.arcsin(rng.uniform(-0.87, 0.97, 2 * n)))
        keep = np.flatnonzero(is_land(lon, lat))[: n - have]
        out[have:have + len(keep)] = np.stack([lon[keep], lat[keep]], 1)
        have += len(keep)
    return np.round(out, 7)


def _iso(t: np.ndarray):
    """datetime64[s] -> pyarrow strings 2020-01-02T03:04:05Z."""
    import pyarrow as pa

    return pa.array(np.char.add(np.datetime_as_string(t, unit="s").astype(object), "Z").tolist(), pa.string())


def _put(table, column: str, values):
    import pyarrow as pa

    i = table.schema.get_field_index(column)
    field = table.schema.field(i)
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=field.type)
    return table.set_column(i, field, values.cast(field.type) if values.type != field.type else values)


def _rewrite_hrefs(table, template_id: str, new_ids: list[str], folders: list[str]):
    """Every asset's href: the template's file name with the template id replaced, in the row's folder."""
    import pyarrow as pa

    assets = table.column("assets").combine_chunks()
    children = []
    for f in assets.type:
        sub = assets.field(f.name)
        name = sub.field("href")[0].as_py().rsplit("/", 1)[1]
        suffix = name.replace(template_id, "")
        hrefs = pa.array([f"./{d}/{i}{suffix}" for d, i in zip(folders, new_ids)], pa.string())
        kids = [hrefs if g.name == "href" else sub.field(g.name) for g in f.type]
        children.append(pa.StructArray.from_arrays(kids, fields=list(f.type)))
    return _put(table, "assets", pa.StructArray.from_arrays(children, fields=list(assets.type)))


class _Draws:
    """Every random value of the synthetic catalog, drawn once (seeded)."""

    def __init__(self, coll: dict, n: int, seed: int):
        rng = np.random.default_rng(seed)
        recipe = coll.get("seco:recipe") or {}
        seasons = recipe.get("seasons") or {}
        anchors = np.array(seasons.get("anchors") or ["2020-01-01", "2020-04-01", "2020-07-01", "2020-10-01"],
                           "datetime64[D]")
        self.S = S = len(anchors)
        window = float(seasons.get("window_days") or 30)
        filters = recipe.get("filters") or {}
        scene_max = float(filters.get("scene_cloud_max") or 20)
        patch_max = float(filters.get("patch_cloud_max") or 0.05)
        self.loc = np.cumsum(rng.integers(1, 4, n))  # rejected candidates leave gaps
        self.points = _points_on_land(rng, n)
        self.origin_id = rng.integers(0, 10_000, n)
        shift = rng.integers(0, int(seasons.get("shift_days") or 1), n)
        start = (anchors[None, :] - shift[:, None]).astype("datetime64[s]")  # (n, S) window starts
        offset = (rng.uniform(0, window, (n, S)) * 86400).astype("timedelta64[s]")
        self.when = start + offset
        self.window = (start, start + np.timedelta64(int(window * 86400), "s"))
        self.cloud = np.round(np.minimum(rng.gamma(0.6, scene_max / 4, (n, S)), scene_max), 3)
        self.pcloud = np.round(np.where(rng.random((n, S)) < 0.7, 0.0, rng.uniform(0, patch_max, (n, S))), 6)
        self.valid = np.ones((n, S))
        self.platform = rng.integers(0, 2, (n, S))
        self.orbit = rng.integers(1, 144, (n, S))
        self.n_rejected = n // 2
        self.rejected_points = _points_on_land(rng, self.n_rejected)
        self.rejected_reason = rng.choice(len(REASONS), self.n_rejected, p=list(REASONS.values()))

    def scene_ids(self, a: int, b: int) -> tuple[list[str], list[str]]:
        when = np.datetime_as_string(self.when[a:b], unit="s").ravel().tolist()
        plat = self.platform[a:b].ravel().tolist()
        orbit = self.orbit[a:b].ravel().tolist()
        zone = ((np.repeat(self.points[a:b, 0], self.S) + 180) // 6 + 1).astype(int).tolist()
        ids = [f"S2{'AB'[p]}_MSIL2A_{w[:10].replace('-', '')}T{w[11:].replace(':', '')}_R{r:03d}_T{z:02d}XXX"
               for w, p, r, z in zip(when, plat, orbit, zone)]
        return ids, [f"sentinel-2{'ab'[p]}" for p in plat]


def _compact_rows(t1, d: _Draws, a: int, b: int, name: str, template_id: str, per_part: int):
    """Rows a..b (locations) of a compact index, from the one-row template ``t1``."""
    import pyarrow as pa

    from seco_data.catalog.layout import location_id

    n, S = b - a, d.S
    t = t1.take(pa.array(np.zeros(n, np.int64)))
    loc = d.loc[a:b]
    ids = [location_id(name, int(x)) for x in loc.tolist()]
    folders = [f"{x // per_part:04d}" for x in loc.tolist()]
    lon, lat = d.points[a:b, 0], d.points[a:b, 1]
    when = d.when[a:b]
    scene, plat = d.scene_ids(a, b)
    struct_type = t.schema.field("seco:seasons").type.value_type
    cols = {
        "season": pa.array(np.tile(np.arange(S), n)),
        "datetime": _iso(when.ravel()),
        "scene_id": pa.array(scene),
        "platform": pa.array(plat),
        "eo:cloud_cover": pa.array(d.cloud[a:b].ravel()),
        "cloud_fraction": pa.array(d.pcloud[a:b].ravel()),
        "valid_fraction": pa.array(d.valid[a:b].ravel()),
        "window": pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n * S + 1, 2, dtype=np.int32)),
                                           _iso(np.stack([d.window[0][a:b].ravel(), d.window[1][a:b].ravel()], 1)
                                                .ravel())),
    }
    structs = pa.StructArray.from_arrays([cols[f.name].cast(f.type) for f in struct_type], fields=list(struct_type))
    seasons = pa.ListArray.from_arrays(pa.array(np.arange(0, n * S + 1, S, dtype=np.int32)), structs)
    t = _put(t, "id", ids)
    t = _put(t, "seco:location", loc)
    t = _put(t, "seco:seasons", seasons)
    t = _put(t, "seco:point", np.stack([lon, lat], 1).tolist())
    t = _put(t, "seco:origin", [f"Synthetic place {k}, XX" for k in d.origin_id[a:b].tolist()])
    t = _put(t, "start_datetime", pa.array(when.min(1).astype("datetime64[us]")))
    t = _put(t, "end_datetime", pa.array(when.max(1).astype("datetime64[us]")))
    t = _put(t, "eo:cloud_cover", d.cloud[a:b].max(1))
    t = _put(t, "seco:cloud_fraction", d.pcloud[a:b].max(1))
    t = _put(t, "bbox", [{"xmin": x - 0.02, "ymin": y - 0.012, "xmax": x + 0.02, "ymax": y + 0.012}
                         for x, y in zip(lon.tolist(), lat.tolist())])
    return _rewrite_hrefs(t, template_id, ids, folders)


def _per_patch_rows(t1, d: _Draws, a: int, b: int, name: str, template_id: str, per_part: int):
    """The rows of locations a..b (one per season) of a per-patch index, from the template ``t1``."""
    import pyarrow as pa

    from seco_data.catalog.layout import item_id

    n, S = b - a, d.S
    t = t1.take(pa.array(np.zeros(n * S, np.int64)))
    loc = np.repeat(d.loc[a:b], S)
    season = np.tile(np.arange(S), n)
    ids = [item_id(name, int(x), int(s)) for x, s in zip(loc.tolist(), season.tolist())]
    folders = [f"{x // per_part:04d}/{x:07d}" for x in loc.tolist()]
    lon, lat = np.repeat(d.points[a:b, 0], S), np.repeat(d.points[a:b, 1], S)
    scene, plat = d.scene_ids(a, b)
    t = _put(t, "id", ids)
    t = _put(t, "seco:location", loc)
    t = _put(t, "seco:season", season)
    t = _put(t, "datetime", pa.array(d.when[a:b].ravel().astype("datetime64[us]")))
    t = _put(t, "seco:scene_id", scene)
    t = _put(t, "platform", plat)
    t = _put(t, "eo:cloud_cover", d.cloud[a:b].ravel())
    t = _put(t, "seco:cloud_fraction", d.pcloud[a:b].ravel())
    t = _put(t, "seco:valid_fraction", d.valid[a:b].ravel())
    t = _put(t, "seco:window", pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * n * S + 1, 2, dtype=np.int32)),
        _iso(np.stack([d.window[0][a:b].ravel(), d.window[1][a:b].ravel()], 1).ravel())))
    t = _put(t, "seco:point", np.stack([lon, lat], 1).tolist())
    t = _put(t, "seco:origin", [f"Synthetic place {k}, XX" for k in np.repeat(d.origin_id[a:b], S).tolist()])
    t = _put(t, "bbox", [{"xmin": x - 0.02, "ymin": y - 0.012, "xmax": x + 0.02, "ymax": y + 0.012}
                         for x, y in zip(lon.tolist(), lat.tolist())])
    t = _put(t, "links", [[{"rel": "self", "href": f"./{f}/{i}.json", "type": "application/geo+json"},
                           {"rel": "root", "href": "./catalog.json", "type": "application/json"},
                           {"rel": "parent", "href": f"./{f[:4]}/catalog.json", "type": "application/json"},
                           {"rel": "collection", "href": "./collection.json", "type": "application/json"}]
                          for f, i in zip(folders, ids)])
    return _rewrite_hrefs(t, template_id, ids, folders)


def synthetic_catalog(template: Path, out: Path, n_locations: int, seed: int = 0) -> Path:
    """An ``out`` catalog folder (collection.json, catalog.json, items.parquet, ledger.sqlite with the
    rejected candidates) of ``n_locations`` locations in the template's layout (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seco_data.catalog.layout import locations_per_part
    from seco_data.catalog.ledger import Ledger

    coll = json.loads((template / "collection.json").read_text())
    compact = coll.get("seco:layout", "per-patch") == "compact"
    src = pq.read_table(template / "items.parquet")
    first = src.column("seco:location")[0].as_py()
    t1 = src.filter(pa.compute.equal(src.column("seco:location"), first))
    template_id = t1.column("id")[0].as_py()
    if not compact:
        t1 = t1.slice(0, 1)  # season 0: every season's row is made from it
    d = _Draws(coll, n_locations, seed)
    name = coll["id"]
    per_part = locations_per_part(d.S)
    rows = _compact_rows if compact else _per_patch_rows

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "items.parquet.tmp"
    with pq.ParquetWriter(tmp, src.schema, compression="zstd") as writer:
        for a in range(0, n_locations, per_part):
            writer.write_table(rows(t1, d, a, min(n_locations, a + per_part), name, template_id, per_part))
    os.replace(tmp, out / "items.parquet")

    rejected = {r: int((d.rejected_reason == k).sum()) for k, r in enumerate(REASONS)}
    coll["seco:stats"] = {"requested": n_locations, "locations": n_locations,
                          "items": n_locations if compact else n_locations * d.S, "patches": n_locations * d.S,
                          "candidates": n_locations + d.n_rejected, "rejections": rejected,
                          "skipped_scenes": {"scene_cloud": 3 * n_locations}, "source": {}}
    pts = d.points
    coll["extent"]["spatial"]["bbox"] = [[float(pts[:, 0].min()), float(pts[:, 1].min()),
                                          float(pts[:, 0].max()), float(pts[:, 1].max())]]
    (out / "collection.json").write_text(json.dumps(coll))
    shutil.copy(template / "catalog.json", out / "catalog.json")
    (out / "ledger.sqlite").unlink(missing_ok=True)
    ledger = Ledger(out / "ledger.sqlite", create=True)
    try:
        reasons = list(REASONS)
        with ledger:
            ledger.add_candidates(
                (int(i), float(x), float(y), None, None, "rejected", reasons[r]) for i, (x, y), r in
                zip(range(10**9, 10**9 + d.n_rejected), d.rejected_points.tolist(), d.rejected_reason.tolist()))
    finally:
        ledger.close()
    return out


# -- measuring -------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (ru_maxrss on Linux also counts the parent's pages at the
    fork, before exec: a bench holding a big catalog's draws would show through), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _child(root: str) -> None:
    """Run in a fresh process (``--child ROOT``): build the viewer's data and payloads, print JSON."""
    from seco_data.serve.viewer.data import CatalogData
    from seco_data.serve.viewer.site import _script

    out = {"rss_imports_mb": rss_mb()}
    t0 = time.perf_counter()
    data = CatalogData(root)
    out.update(build_s=time.perf_counter() - t0, rss_built_mb=rss_mb())
    ids = data.chunk_ids()
    for name, make in [("meta", lambda: data.meta("/")), ("map", data.map), ("patches", data.patches),
                       ("chunk", lambda: data.chunk(ids[len(ids) // 2]) if ids else None)]:
        t0 = time.perf_counter()
        body = _script(name, make())
        out.update({f"{name}_s": time.perf_counter() - t0, f"{name}_bytes": len(body)})
    out.update(locations=len(data.locations), patches=data.n_patches, items=data.n_items,
               rejected=len(data.rejected["lon"]) if data.rejected else 0, rss_peak_mb=rss_mb())
    print(json.dumps(out))


def _serve(root: str) -> None:
    """Run in a fresh process (``--serve ROOT``): ``seco-data catalog serve``'s server; prints its URL,
    serves until stdin closes, then prints its peak RSS."""
    from seco_data.serve.server import start_server

    server, url = start_server(root, port=0)
    print(json.dumps({"url": url}), flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
    print(json.dumps({"rss_peak_mb": rss_mb()}), flush=True)


def chromium():
    chrome, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chrome or not driver:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"]:
        opts.add_argument(arg)
    opts.binary_location = chrome
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def page_ready(d, url: str, *, patches: bool = False) -> dict:
    """Load ``url`` until the page says it is ready (and, with ``patches``, until the map page has
    its patches for the filters too); its figures (ms since navigation start)."""
    from selenium.webdriver.support.ui import WebDriverWait

    d.get("about:blank")
    t0 = time.perf_counter()
    d.get(url)
    flag = "window.__secoPatches" if patches else "window.__secoReady"
    WebDriverWait(d, 300).until(lambda d: d.execute_script(f"return {flag} || window.__secoError || null"))
    wall = time.perf_counter() - t0
    err = d.execute_script("return window.__secoError || null")
    if err:
        raise RuntimeError(f"{url}: {err}")
    t = d.execute_script("return {ready: window.__secoReady, draw: window.__secoDrawMs || null,"
                         " patches: window.__secoPatches || null, drawn: window.__secoDrawn || null,"
                         " ...(window.__secoTimings || {})}")
    t["wall_s"] = wall
    return t


def filter_ms(d) -> float:
    """One filter change (scene cloud <= 5 %): refilter, recolour, redraw and relist, in ms."""
    return d.execute_script("""
        const box = document.getElementById('f-cloud'); box.value = '5';
        const t0 = performance.now(); box.dispatchEvent(new Event('input')); return performance.now() - t0;""")


def measure_viewer(root: str | Path, *, runs: int = 3, browser: bool = True) -> dict:
    """The viewer over the catalog in ``root``: ``CatalogData`` build time, payload sizes and peak
    RSS (in a fresh subprocess: ``rss_peak_mb``), and, with ``browser`` and Chromium at hand, the map
    page's time to ready from ``seco-data catalog serve``'s server (run in a subprocess too, so the
    caller's memory stays out of it: ``server_rss_peak_mb``): the first load, which reads the index,
    then the median of ``runs`` loads; one draw, a filter change and a location page."""
    root = Path(root)
    me = [sys.executable, str(Path(__file__).resolve())]
    proc = subprocess.run(me + ["--child", str(root)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"measuring {root} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["runs"] = runs
    d = chromium() if browser else None
    if d is None:
        return out
    server = subprocess.Popen(me + ["--serve", str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(server.stdout.readline())["url"]
        first = page_ready(d, url + "/viewer/", patches=True)  # the server reads the index, makes the payloads
        loads = [page_ready(d, url + "/viewer/", patches=True) for _ in range(runs)]
        med = {k: statistics.median(r[k] for r in loads) for k in ("ready", "draw", "patches", "map_js_ms", "data_ms")}
        out.update({
            "page_first_s": first["ready"] / 1000,
            "page_ready_s": med["ready"] / 1000,
            "page_map_js_s": med["map_js_ms"] / 1000,
            "page_data_s": med["data_ms"] / 1000,
            "page_patches_s": med["patches"] / 1000,
            "draw_ms": med["draw"],
            "drawn": loads[-1]["drawn"],
            "filter_ms": statistics.median(filter_ms(d) for _ in range(runs)),
        })
        loc = d.execute_script("const r = document.querySelector('#loc-rows tr[data-loc]'); return r && +r.dataset.loc")
        if loc is not None:
            out["location_ready_s"] = statistics.median(
                page_ready(d, url + f"/viewer/location.html#{loc}")["ready"] for _ in range(runs)) / 1000
    finally:
        d.quit()
        last, _ = server.communicate(timeout=60)  # closes its stdin: it stops and says its peak RSS
    out["server_rss_peak_mb"] = json.loads(last.strip().splitlines()[-1])["rss_peak_mb"]
    return out


def report(r: dict) -> str:
    mb = 1e6
    lines = [
        f"CatalogData  build {r['build_s']:6.2f} s   peak RSS {r['rss_peak_mb']:7.0f} MB "
        f"(after imports {r['rss_imports_mb']:.0f} MB, after the build {r['rss_built_mb']:.0f} MB)",
        f"payloads     meta.js {r['meta_bytes'] / 1e3:.1f} kB; "
        f"map.js {r['map_bytes'] / mb:.2f} MB ({r['map_s']:.2f} s, "
        f"{r['map_bytes'] / max(1, r['locations']):.1f} B per location); patches.js {r['patches_bytes'] / mb:.2f} MB "
        f"({r['patches_s']:.2f} s, {r['patches_bytes'] / max(1, r['patches']):.1f} B per patch); "
        f"a location chunk {r['chunk_bytes'] / 1e3:.0f} kB ({r['chunk_s'] * 1000:.0f} ms)",
    ]
    if "page_ready_s" in r:
        lines += [
            f"map page     ready {r['page_ready_s']:6.2f} s after navigation (median of {r['runs']}: map.js run at "
            f"{r['page_map_js_s']:.2f} s, unpacked at {r['page_data_s']:.2f} s; one draw {r['draw_ms']:.0f} ms; "
            f"{r['drawn']:,} locations drawn); patches for the filters in at {r['page_patches_s']:.2f} s",
            f"             first load {r['page_first_s']:6.2f} s (the server reads the index first); "
            f"filter change {r['filter_ms']:.0f} ms; "
            f"location page ready {r.get('location_ready_s', float('nan')):.2f} s",
            f"server       peak RSS {r['server_rss_peak_mb']:.0f} MB (its data and the payloads it keeps)",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="locations, comma-separated")
    ap.add_argument("--layout", choices=["compact", "per-patch"], default="compact")
    ap.add_argument("--runs", type=int, default=3, help="browser page loads per figure (median)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--dir", type=Path, default=None, help="work folder, kept (default: a temporary one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return _child(a.child)
    if a.serve:
        return _serve(a.serve)
    os.environ.setdefault("SECO_CACHE_DIR", str(Path.home() / ".cache" / "seco"))
    work = a.dir or Path(tempfile.mkdtemp(prefix="seco-bench-viewer-"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; layout {a.layout}; work folder {work}")
    try:
        template = template_catalog(work / f"template-{a.layout}", a.layout)
        for size in (int(s) for s in a.sizes.split(",")):
            root = work / f"{a.layout}-{size}"
            t0 = time.perf_counter()
            if not (root / "items.parquet").exists():
                synthetic_catalog(template, root, size)
            made = time.perf_counter() - t0
            r = measure_viewer(root, runs=a.runs, browser=not a.no_browser)
            print(f"\n== {size:,} locations, {r['patches']:,} patches, {r['items']:,} items, "
                  f"{r['rejected']:,} rejected "
                  f"candidates (index {(root / 'items.parquet').stat().st_size / 1e6:.0f} MB, made in {made:.0f} s) ==")
            print(report(r))
            sys.stdout.flush()
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
