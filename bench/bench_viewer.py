"""Benchmark of the catalog viewer at 100,000 items (issue 7: "pages stay fast with 100,000 items").

1. A synthetic index: a real 2-location simulator catalog is made (seco-data sample), and its
   items.parquet rows are tiled with pyarrow to N items (N / seasons locations on land, random dates,
   cloud and ids, hrefs rewritten): the exact stac-geoparquet layout seco writes, in seconds, without
   writing 100,000 GeoTIFFs (the pages only link to them).
2. Building the site data: reading the index (`CatalogData`), the map payload, and `build_site`
   (every file of the static site, all location chunks), with the sizes.
3. Serving: `seco-data catalog serve`'s server (seco_data.serve.server) over loopback; first (cold: reads
   the index) and warm requests of the map page and its data.
4. Headless Chromium: the map page loaded from the server until the points are drawn
   (`window.__secoReady`, milliseconds since navigation start, set by the page after drawing), the
   draw time alone, a filter change, and a location page; then the static site opened from disk.

Usage: python bench/bench_viewer.py [--items 100000] [--seasons 4] [--dir DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np


def template_catalog(out: Path) -> Path:
    """A real 2-location demo catalog (the layout to copy)."""
    from seco_data.sample.run import sample
    from seco_data.recipe import load_recipe

    if not (out / "items.parquet").exists():
        sample(load_recipe("demo", {"n": 2}), out, workers=1)
    return out


def synthetic_catalog(template: Path, out: Path, n_items: int, seasons: int = 4, seed: int = 0) -> Path:
    """An ``out`` catalog folder (collection.json, catalog.json, items.parquet) of ``n_items`` items:
    the template's rows tiled and given new locations, dates, cloud, ids and hrefs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seco_data.landmask import is_land
    from seco_data.catalog.layout import location_dir

    rng = np.random.default_rng(seed)
    t = pq.read_table(template / "items.parquet")
    t = t.sort_by([("seco:location", "ascending"), ("seco:season", "ascending")])
    first = t.column("seco:location")[0].as_py()
    t = t.filter(pc.equal(t.column("seco:location"), first))  # one location's seasons
    if t.num_rows < seasons:
        raise SystemExit(f"the template has {t.num_rows} seasons per location, fewer than {seasons}")
    n_loc = n_items // seasons
    n = n_loc * seasons
    tiled = t.take(pa.array(np.tile(np.arange(seasons), n_loc)))
    loc = np.repeat(np.arange(1, n_loc + 1), seasons)
    season = np.tile(np.arange(seasons), n_loc)

    # points on land: uniform on the sphere, kept where the land mask says land
    pts = np.empty((0, 2))
    while len(pts) < n_loc:
        lon = rng.uniform(-180, 180, 4 * n_loc)
        lat = np.degrees(np.arcsin(rng.uniform(-0.87, 0.97, 4 * n_loc)))
        keep = is_land(lon, lat)
        pts = np.concatenate([pts, np.stack([lon[keep], lat[keep]], 1)])
    pts = np.round(pts[:n_loc], 7)
    lon, lat = np.repeat(pts[:, 0], seasons), np.repeat(pts[:, 1], seasons)

    t0 = np.datetime64("2020-01-01T00:00:00", "s")
    shift = np.repeat(rng.integers(0, 365, n_loc), seasons)
    when = t0 + ((season * 91 + shift) * 86400 + rng.integers(0, 86400, n)).astype("timedelta64[s]")
    cloud = np.round(rng.gamma(0.6, 4.0, n).clip(0, 20), 3)
    pcloud = np.round(np.where(rng.random(n) < 0.8, 0.0, rng.uniform(0, 0.05, n)), 6)
    name = t.column("collection")[0].as_py() or "demo"
    ids = [f"{name}-{a:07d}-s{b}" for a, b in zip(loc.tolist(), season.tolist())]
    dirs = [location_dir(a, seasons) for a in loc.tolist()]
    stamp = np.datetime_as_string(when, unit="s")
    scenes = [f"S2A_MSIL2A_{s[:10].replace('-', '')}T{s[11:19].replace(':', '')}_R{r:03d}_T{z:02d}XXX"
              for s, r, z in zip(stamp, rng.integers(1, 143, n).tolist(), ((lon + 180) // 6 + 1).astype(int).tolist())]

    def put(table, column, values):
        i = table.schema.get_field_index(column)
        return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))

    tiled = put(tiled, "id", ids)
    tiled = put(tiled, "seco:location", loc)
    tiled = put(tiled, "seco:season", season)
    tiled = put(tiled, "datetime", when.astype("datetime64[us]"))
    tiled = put(tiled, "eo:cloud_cover", cloud)
    tiled = put(tiled, "seco:cloud_fraction", pcloud)
    tiled = put(tiled, "seco:scene_id", scenes)
    tiled = put(tiled, "seco:origin", [f"synthetic place {a % 5000}" for a in loc.tolist()])
    tiled = put(tiled, "seco:point", np.stack([lon, lat], 1).tolist())
    tiled = put(tiled, "bbox", [{"xmin": a - 0.02, "ymin": b - 0.012, "xmax": a + 0.02, "ymax": b + 0.012}
                                for a, b in zip(lon.tolist(), lat.tolist())])
    tiled = put(tiled, "links", [
        [{"rel": "self", "href": f"./{d}/{i}.json", "type": "application/geo+json"},
         {"rel": "root", "href": "./catalog.json", "type": "application/json"},
         {"rel": "parent", "href": f"./{d.split('/')[0]}/catalog.json", "type": "application/json"},
         {"rel": "collection", "href": "./collection.json", "type": "application/json"}]
        for d, i in zip(dirs, ids)])
    # every asset's href, rewritten in place inside the nested struct column
    template_id = t.column("id")[0].as_py()
    assets = tiled.column("assets").combine_chunks()
    children = []
    for f in assets.type:
        sub = assets.field(f.name)
        suffix = sub.field("href")[0].as_py().rsplit("/", 1)[1].replace(template_id, "")
        hrefs = pa.array([f"./{d}/{i}{suffix}" for d, i in zip(dirs, ids)])
        kids = [hrefs if g.name == "href" else sub.field(g.name) for g in f.type]
        children.append(pa.StructArray.from_arrays(kids, fields=list(f.type)))
    tiled = tiled.set_column(tiled.schema.get_field_index("assets"), "assets",
                             pa.StructArray.from_arrays(children, fields=list(assets.type)))
    # geometry (WKB footprints) stays the template's: the viewer never reads it

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(tiled, out / "items.parquet", compression="zstd")
    coll = json.loads((template / "collection.json").read_text())
    rejected = {"scene_cloud": n_loc // 5, "not_land": n_loc // 8, "patch_cloud": n_loc // 12, "coverage": n_loc // 30}
    coll["seco:stats"] = {"requested": n_loc, "locations": n_loc, "items": n,
                          "candidates": n_loc + sum(rejected.values()), "rejections": rejected,
                          "skipped_scenes": {"scene_cloud": 3 * n_loc}, "source": {}}
    coll["extent"]["spatial"]["bbox"] = [[float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]]
    (out / "collection.json").write_text(json.dumps(coll))
    shutil.copy(template / "catalog.json", out / "catalog.json")
    return out


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    r = fn(*args, **kw)
    return r, time.perf_counter() - t0


def bench_data(root: Path, work: Path) -> dict:
    from seco_data.serve.viewer import build_site
    from seco_data.serve.viewer.data import CatalogData

    data, t_read = timed(CatalogData, root)
    m, t_map = timed(data.map)
    body = json.dumps(m, separators=(",", ":")).encode()
    chunk, t_chunk = timed(data.chunk, data.chunk_ids()[len(data.chunk_ids()) // 2])
    shutil.rmtree(work / "site", ignore_errors=True)
    site, t_site = timed(build_site, root, work / "site")
    files = [p for p in site.rglob("*") if p.is_file()]
    return {"read_s": t_read, "map_s": t_map, "chunk_s": t_chunk, "site_s": t_site, "map_bytes": len(body),
            "site_bytes": sum(p.stat().st_size for p in files), "site_files": len(files),
            "chunks": len(data.chunk_ids()), "locations": len(m["loc"]), "items": len(m["season"]),
            "chunk_bytes": max(p.stat().st_size for p in (site / "data" / "loc").iterdir()), "site": site}


def bench_server(root: Path) -> tuple[dict, object, str]:
    from seco_data.serve.server import start_server

    server, url = start_server(root, port=0)

    def get(path: str) -> tuple[int, float]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + path) as r:
            n = len(r.read())
        return n, time.perf_counter() - t0

    out = {}
    out["page_bytes"], out["page_s"] = get("/viewer/")
    out["meta_bytes"], out["meta_cold_s"] = get("/viewer/data/meta.js")  # reads the index
    out["map_bytes"], out["map_s"] = get("/viewer/data/map.js")
    _, out["map_warm_s"] = get("/viewer/data/map.js")
    _, out["chunk_s"] = get("/viewer/data/loc/1.js")
    _, out["land_s"] = get("/viewer/data/land.png")
    # the STAC API over the same index: first search (loads it), a bbox+datetime page, deep paging, ids
    _, out["search_cold_s"] = get("/api/search?limit=10")
    q = "/api/search?limit=100&bbox=0,0,40,40&datetime=2020-01-01T00:00:00Z/2021-12-31T23:59:59Z"
    out["search_s"] = sorted(get(q)[1] for _ in range(5))[2]
    out["search_deep_s"] = sorted(get(f"/api/search?limit=100&token={n}")[1] for n in (50_000, 80_000, 99_000))[1]
    out["search_1000_s"] = get("/api/search?limit=1000")[1]
    return out, server, url + "/viewer/"


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


def page_ready(d, url: str) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    t0 = time.perf_counter()
    d.get("about:blank")
    d.get(url)
    WebDriverWait(d, 120).until(lambda d: d.execute_script("return window.__secoReady || window.__secoError || null"))
    wall = time.perf_counter() - t0
    err = d.execute_script("return window.__secoError || null")
    if err:
        raise RuntimeError(f"{url}: {err}")
    t = d.execute_script("return {ready: window.__secoReady, draw: window.__secoDrawMs || null,"
                         " data: (window.__secoTimings || {}).data_ms || null, drawn: window.__secoDrawn || null}")
    t["wall_s"] = wall
    return t


def filter_ms(d) -> float:
    """One filter change (scene cloud <= 5 %): refilter, recolour, redraw and relist, in ms."""
    return d.execute_script("""
        const box = document.getElementById('f-cloud'); box.value = '5';
        const t0 = performance.now(); box.dispatchEvent(new Event('input')); return performance.now() - t0;""")


def bench_browser(url: str, site: Path, runs: int) -> dict | None:
    d = chromium()
    if d is None:
        return None
    try:
        out = {}
        served = [page_ready(d, url) for _ in range(runs)]
        out["map_ready_ms"] = statistics.median(r["ready"] for r in served)
        out["map_draw_ms"] = statistics.median(r["draw"] for r in served)
        out["map_data_ms"] = statistics.median(r["data"] for r in served)
        out["drawn"] = served[-1]["drawn"]
        out["filter_ms"] = statistics.median(filter_ms(d) for _ in range(runs))
        loc = [page_ready(d, url + "location.html#12345") for _ in range(runs)]
        out["location_ready_ms"] = statistics.median(r["ready"] for r in loc)
        disk = [page_ready(d, (site / "index.html").as_uri()) for _ in range(runs)]
        out["static_map_ready_ms"] = statistics.median(r["ready"] for r in disk)
        return out
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--seasons", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3, help="browser page loads per figure (median)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()
    os.environ.setdefault("SECO_CACHE_DIR", str(Path.home() / ".cache" / "seco"))
    work = a.dir or Path(tempfile.mkdtemp(prefix="seco-bench-viewer-"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; work folder {work}")

    template, t_tpl = timed(template_catalog, work / "template")
    shutil.rmtree(work / "catalog", ignore_errors=True)
    root, t_gen = timed(synthetic_catalog, template, work / "catalog", a.items, a.seasons)
    print(f"\n== synthetic index: {a.items:,} items ({a.items // a.seasons:,} locations x {a.seasons} seasons) ==")
    print(f"template catalog {t_tpl:.1f} s; tiled items.parquet {t_gen:.1f} s, "
          f"{(root / 'items.parquet').stat().st_size / 1e6:.1f} MB")

    d = bench_data(root, work)
    print("\n== site data (items.parquet -> payloads) ==")
    print(f"read the index (CatalogData)   {d['read_s']:6.2f} s   ({d['locations']:,} locations, {d['items']:,} items)")
    print(f"map payload                    {d['map_s']:6.2f} s   {d['map_bytes'] / 1e6:.2f} MB of JSON")
    print(f"one location chunk             {d['chunk_s'] * 1000:6.1f} ms  "
          f"(largest chunk file {d['chunk_bytes'] / 1e3:.0f} kB)")
    print(f"build_site (static site)       {d['site_s']:6.2f} s   {d['site_files']:,} files, "
          f"{d['site_bytes'] / 1e6:.1f} MB, {d['chunks']} chunks")

    s, server, url = bench_server(root)
    print("\n== server (seco_data.serve.server over loopback) ==")
    print(f"GET /viewer/                   {s['page_s'] * 1000:6.1f} ms  ({s['page_bytes']:,} B)")
    print(f"GET data/meta.js, cold         {s['meta_cold_s'] * 1000:6.1f} ms  (reads the index)")
    print(f"GET data/map.js                {s['map_s'] * 1000:6.1f} ms  ({s['map_bytes'] / 1e6:.2f} MB); warm "
          f"{s['map_warm_s'] * 1000:.1f} ms")
    print(f"GET data/loc/1.js              {s['chunk_s'] * 1000:6.1f} ms;  data/land.png {s['land_s'] * 1000:.1f} ms")
    print(f"GET /api/search, first (loads the index) {s['search_cold_s'] * 1000:6.1f} ms")
    print(f"GET /api/search bbox+datetime, 100 items {s['search_s'] * 1000:6.1f} ms (median of 5); deep page "
          f"(token 50k-99k) {s['search_deep_s'] * 1000:.1f} ms; limit=1000 {s['search_1000_s'] * 1000:.1f} ms")
    try:
        b = bench_browser(url, d["site"], a.runs)
    finally:
        server.shutdown()
        server.server_close()
    print("\n== headless Chromium (median of %d loads; ms since navigation start) ==" % a.runs)
    if b is None:
        print("skipped: chromium and chromedriver not found (make browser)")
    else:
        print(f"map page, served: data loaded {b['map_data_ms']:7.0f} ms; points drawn {b['map_ready_ms']:7.0f} ms "
              f"({b['drawn']:,} locations; one draw {b['map_draw_ms']:.0f} ms)")
        print(f"filter change (refilter + redraw + list)    {b['filter_ms']:7.0f} ms")
        print(f"location page, served: ready {b['location_ready_ms']:7.0f} ms")
        print(f"map page, static site from disk (file://): points drawn {b['static_map_ready_ms']:7.0f} ms")
    if a.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
