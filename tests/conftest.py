import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SECO_SHARED") or ROOT.parent / "shared").resolve()

# tests write scratch data: no fsync (seco_data.outputs; a kill -9 loses nothing without it, only a power
# loss would); tests/test_integrity.py turns it back on where the syncing itself is the point
os.environ.setdefault("SECO_FSYNC", "0")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # tests run in parallel, one per core (make test: -n auto): each keeps to one thread, so OpenMP
    # pools do not oversubscribe the cores (set before torch or numpy start their thread pools)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.fail(f"shared data not found at {SHARED}: set SECO_SHARED to the shared/ folder")
    return SHARED


@pytest.fixture(scope="session")
def schemas(shared) -> Path:
    return shared / "stac-schemas"


@pytest.fixture()
def scripted():
    """Register tests/fakes.py:ScriptedSource as source 'scripted' for this test."""
    from seco_data.sources import register, unregister

    register("scripted", "fakes:ScriptedSource")
    yield "scripted"
    unregister("scripted")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # keep the land mask cache shared across tests (it is built once per machine)
    monkeypatch.setenv("SECO_CACHE_DIR", os.environ.get("SECO_CACHE_DIR") or str(Path.home() / ".cache" / "seco"))


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """A finished 5-location, 4-season catalog from the simulator (read-only: copy it to modify)."""
    from seco_data.sample import sample
    from seco_data.recipe import load_recipe

    from helpers import built_once

    os.environ.setdefault("SECO_CACHE_DIR", str(Path.home() / ".cache" / "seco"))
    return built_once(tmp_path_factory, "demo-5",
                      lambda folder: sample(load_recipe("demo", {"n": 5}), folder / "demo", workers=1)) / "demo"


@pytest.fixture(scope="session")
def per_patch_catalog(tmp_path_factory) -> Path:
    """The demo recipe's first 2 locations in the per-patch layout: an item JSON per location x season
    (read-only: copy it to modify)."""
    from seco_data.sample import sample
    from seco_data.recipe import load_recipe

    from helpers import built_once

    os.environ.setdefault("SECO_CACHE_DIR", str(Path.home() / ".cache" / "seco"))
    return built_once(tmp_path_factory, "per-patch-2", lambda folder: sample(
        load_recipe("demo", {"n": 2, "layout": "per-patch"}), folder / "demo", workers=1)) / "demo"
