"""Regenerate the README's viewer screenshots (docs/img/*.png) with headless Chromium.

    python docs/make_screenshots.py [--n 300] [--catalog /tmp/seco-shots]

Samples a demo catalog (the offline simulator; resumes if it exists), serves it with
``seco_data.serve.server.start_server`` and photographs the map, a location and the summary page.
Needs chromium and chromedriver (`make browser`) and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHOTS = [("viewer-map.png", "/viewer/", 960), ("viewer-location.png", "/viewer/location.html#12", 940),
         ("viewer-summary.png", "/viewer/summary.html", 1000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--catalog", type=Path, default=Path("/tmp/seco-shots"))
    ap.add_argument("--out", type=Path, default=HERE / "img")
    a = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from seco_data.sample.run import sample
    from seco_data.recipe import load_recipe
    from seco_data.serve.server import start_server

    if not (a.catalog / "collection.json").exists():
        sample(load_recipe("demo", {"n": a.n}), a.catalog, workers=2)
    a.out.mkdir(parents=True, exist_ok=True)
    server, url = start_server(a.catalog, port=0)
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    try:
        for name, page, height in SHOTS:
            driver.set_window_size(1400, height)
            driver.get(url + page)
            deadline = time.monotonic() + 20
            while not driver.execute_script("return window.__secoReady") and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)  # the last paint after the ready mark
            driver.save_screenshot(str(a.out / name))
            print(a.out / name)
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
