"""`seco-data catalog serve` under load (issue 17): the uvicorn + starlette server against the
``http.server`` one it replaced, side by side in one run, on the same catalog and the same requests.

The old server is the one of commit 8bdbb58 (``git show 8bdbb58:seco_data/serve/server.py``), loaded
as a module next to the new one; both answer the API through the same ``StacApi``.

- burst: C clients connect at once, each sends R requests (catalog.json, a GeoTIFF, a search, the
  collections), one connection per request: answered, refused or reset, wall time;
- sequential: one client, N keep-alive-less requests of catalog.json: requests/s.

Usage: python bench/bench_serve.py [--clients 200] [--requests 2] [--sequential 300] [--catalog DIR]
(without --catalog a 20-location demo catalog is sampled into a temporary folder)
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OLD_COMMIT = "8bdbb58"


def old_server_module():
    """The http.server-based server module of :data:`OLD_COMMIT`, importable beside the new one."""
    repo = Path(__file__).resolve().parent.parent
    code = subprocess.run(["git", "show", f"{OLD_COMMIT}:seco_data/serve/server.py"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout
    mod = types.ModuleType("seco_data.serve._old_server")
    mod.__package__ = "seco_data.serve"
    mod.__file__ = "<old server>"
    sys.modules[mod.__name__] = mod
    exec(compile(code, f"{OLD_COMMIT}:seco_data/serve/server.py", "exec"), mod.__dict__)
    return mod


def start_old(root: Path):
    mod = old_server_module()
    server = mod.make_server(root, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.url


def one(url: str, path: str) -> str:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        conn.close()
        return "ok" if r.status == 200 else f"http {r.status}"
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        return "reset"
    except OSError as e:
        return type(e).__name__


def burst(url: str, paths: list[str], clients: int, requests: int) -> dict:
    gate = threading.Barrier(clients)

    def client(k: int) -> list[str]:
        gate.wait()
        return [one(url, paths[(k + j) % len(paths)]) for j in range(requests)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for got in pool.map(client, range(clients)) for r in got]
    secs = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    return {"seconds": secs, **counts}


def sequential(url: str, n: int) -> float:
    t0 = time.perf_counter()
    bad = [r for r in (one(url, "/catalog.json") for _ in range(n)) if r != "ok"]
    assert not bad, bad[:3]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--sequential", type=int, default=300)
    ap.add_argument("--catalog", type=Path)
    args = ap.parse_args()
    from seco_data.serve.server import start_server

    with tempfile.TemporaryDirectory() as tmp:
        root = args.catalog
        if root is None:
            from seco_data.recipe import load_recipe
            from seco_data.sample.run import sample

            root = Path(tmp) / "demo"
            sample(load_recipe("demo", {"n": 20}), root, workers=1)
        tif = sorted(root.glob("[0-9]*/**/*_10m.tif"))[0].relative_to(root).as_posix()
        paths = ["/catalog.json", "/" + tif, "/api/search?limit=10", "/api/collections"]
        print(f"{args.clients} clients x {args.requests} requests at once ({', '.join(paths)}), then "
              f"{args.sequential} sequential requests; {platform.machine()}, {os.cpu_count()} cores")
        for name, start in (("http.server (8bdbb58)", start_old), ("uvicorn + starlette", start_server)):
            if start is start_server:
                server, url = start_server(root)
            else:
                server, url = start(root)
            try:
                one(url, "/api/search?limit=1")  # warm: the index loaded
                b = burst(url, paths, args.clients, args.requests)
                rps = sequential(url, args.sequential)
            finally:
                server.shutdown()
                server.server_close()
            failed = {k: v for k, v in b.items() if k not in ("seconds", "ok")}
            print(f"{name:22} burst: {b.get('ok', 0)}/{args.clients * args.requests} answered 200 "
                  f"({', '.join(f'{v} {k}' for k, v in failed.items()) or 'none failed'}) in {b['seconds']:.2f} s; "
                  f"sequential {rps:.0f} requests/s")


if __name__ == "__main__":
    main()
