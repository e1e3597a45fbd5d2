import json

import pystac
import pytest

from helpers import check_catalog, ledger_rows
from seco_data.sample.run import finalize, sample
from seco_data.errors import IncompleteError, LedgerError, OutputError, UsageError
from seco_data.catalog.info import catalog_info
from seco_data.recipe import load_recipe
from seco_data.catalog.validate import validate_catalog


def _recipe(source, **kw):
    return load_recipe("demo", {"source": source, "n": 12, "bands": ["B02", "B03", "B04", "B08", "B05", "B01"], **kw})


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_scripted_run_is_a_valid_complete_catalog(tmp_path, scripted, schemas, layout):
    out = tmp_path / "out"
    report = sample(_recipe(scripted, layout=layout), out)
    assert report.complete and report.accepted == 12 and report.patches == 48
    items = check_catalog(out, 12, 4)
    n_items = 12 if layout == "compact" else 48
    n, problems = validate_catalog(out, schemas)
    sub_catalogs = 0 if layout == "compact" else 1
    assert problems == [] and n == 1 + 1 + sub_catalogs + n_items
    # pystac reads the static tree and resolves links; a compact catalog's items are in its
    # stac-geoparquet asset only (browse them through `catalog serve`'s API)
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    coll = next(cat.get_children())
    assert isinstance(coll, pystac.Collection)
    assert len(list(coll.get_items(recursive=True))) == (0 if layout == "compact" else 48)
    assert coll.assets["items"].roles == ["stac-items"] and coll.extra_fields["seco:layout"] == layout
    c = json.loads((out / "collection.json").read_text())
    assert c["seco:recipe"]["n"] == 12 and c["seco:recipe"]["bands"][0] == "B02"
    assert c["seco:stats"]["locations"] == 12 and c["seco:source"]["synthetic"] is True
    assert c["seco:stats"]["items"] == n_items and c["seco:stats"]["patches"] == 48
    it = items[0]
    assert set(it["assets"]) == {"data_10m", "data_20m", "data_60m", "thumbnail"}
    assert it["assets"]["data_20m"]["proj:shape"] == [132, 132]
    info = catalog_info(out)
    assert info["locations"] == 12 and info["items"] == n_items and info["patches"] == 48
    assert info["items_per_season"] == {str(s): 12 for s in range(4)}
    assert sum(h["count"] for h in info["scene_cloud_histogram"]) == 48


def test_same_result_whatever_the_workers(tmp_path, scripted):
    r = _recipe(scripted, n=20)
    sample(r, tmp_path / "a", workers=1)
    sample(r, tmp_path / "b", workers=4)
    assert ledger_rows(tmp_path / "a") == ledger_rows(tmp_path / "b")
    for p in (tmp_path / "a").rglob("*.tif"):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_rerun_resumes_grows_and_refuses_other_settings(tmp_path, scripted):
    out = tmp_path / "out"
    sample(_recipe(scripted, n=5), out)
    before = ledger_rows(out)
    again = sample(_recipe(scripted, n=5), out)
    assert again.resumed and ledger_rows(out) == before  # nothing redone, nothing lost
    grown = sample(_recipe(scripted, n=8), out)
    assert grown.accepted == 8 and ledger_rows(out)[: len(before)] == before
    # growing gives the same dataset as asking for 8 at once
    sample(_recipe(scripted, n=8), tmp_path / "fresh")
    assert ledger_rows(tmp_path / "fresh") == ledger_rows(out)
    with pytest.raises(OutputError, match="filters.scene_cloud_max"):
        sample(_recipe(scripted, n=8, **{"filters.scene_cloud_max": 5}), out)
    with pytest.raises(UsageError, match="already holds 8"):
        sample(_recipe(scripted, n=3), out)
    check_catalog(out, 8, 4)


def test_output_folder_errors(tmp_path, scripted):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("keep")
    with pytest.raises(OutputError, match="not empty"):
        sample(_recipe(scripted), tmp_path / "full")
    assert (tmp_path / "full" / "precious.txt").read_text() == "keep"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        sample(_recipe(scripted), tmp_path / "file" / "out")


def test_corrupt_ledger_is_refused_and_nothing_is_touched(tmp_path, scripted):
    out = tmp_path / "out"
    sample(_recipe(scripted, n=3), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix == ".tif"}
    (out / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    for p in out.glob("ledger.sqlite-*"):
        p.unlink()
    with pytest.raises(LedgerError, match="corrupt"):
        sample(_recipe(scripted, n=3), out)
    assert {p: p.read_bytes() for p in before} == before


def test_exhausted_candidates_give_an_incomplete_but_valid_catalog(tmp_path, scripted, schemas):
    from fakes import ScriptedSource

    class Picky(ScriptedSource):
        def search(self, grid, start, end):  # only locations east of Greenwich ever pass
            lon = grid.centre_lonlat[0]
            return super().search(grid, start, end) if lon > 0 else []

    out = tmp_path / "out"
    with pytest.raises(IncompleteError, match="only"):  # the source is injected: no global registry touched
        sample(_recipe(scripted, n=30, max_draws_per_location=1), out, workers=2, source_factory=Picky)
    c = json.loads((out / "collection.json").read_text())
    got = c["seco:stats"]["locations"]
    assert 0 < got < 30 and c["seco:stats"]["rejections"]["no_scene"] > 0
    check_catalog(out, got, 4)
    assert validate_catalog(out, schemas)[1] == []
    (out / "items.parquet").unlink()
    assert finalize(out).accepted == got  # rebuilt from the ledger
    check_catalog(out, got, 4)


def test_index_parts_checked_while_sampling_read_only_their_own_rows(tmp_path, demo_catalog):
    """A sampler asks which index parts are stale after every finished part: the ranged question must
    read only those parts' rows (a pass over the whole ledger each time made 1M locations quadratic),
    and answer as the whole-ledger pass does."""
    import shutil

    from seco_data.catalog.layout import locations_per_part
    from seco_data.catalog.ledger import Ledger
    from seco_data.catalog.rebuild import build_parts, stale_parts

    cm = {"seasons": 4}
    per = locations_per_part(4)
    ledger = Ledger(tmp_path / "ledger.sqlite", create=True)
    rows = [(i, "accepted" if i % 3 else "rejected", 0.0, 0.0, i % 7) for i in range(0, 5 * per, 37)]
    with ledger.db:
        ledger.db.executemany("INSERT INTO candidates (idx, status, lon, lat, version) VALUES (?, ?, ?, ?, ?)", rows)
    statements: list[str] = []
    ledger.db.set_trace_callback(statements.append)
    state = {"parts": {str(p): {"digest": list(d)} for p, d in ledger.part_digests(per).items()}}
    assert stale_parts(ledger, cm, state) == set() and len(state["parts"]) == 5

    # part 1 changes (a location accepted again: new version), part 3 loses every location
    with ledger.db:
        moved = next(i for i, status, *_ in rows if per <= i < 2 * per and status == "accepted")
        ledger.db.execute("UPDATE candidates SET version = 99 WHERE idx = ?", (moved,))
        ledger.db.execute("UPDATE candidates SET status = 'rejected' WHERE idx BETWEEN ? AND ?", (3 * per, 4 * per - 1))
    whole = stale_parts(ledger, cm, state)
    assert whole == {1, 3}
    statements.clear()
    assert stale_parts(ledger, cm, state, below=4 * per + 5, start=per + 1) == {1, 3}  # parts 1-3
    assert stale_parts(ledger, cm, state, below=3 * per, start=2 * per) == set()  # part 2 alone
    assert not [s for s in statements if "GROUP BY" in s.upper()], "a ranged check read the whole ledger"
    assert all("BETWEEN" in s for s in statements if s.lstrip().upper().startswith("SELECT"))

    # building a part records its digest from its own rows too
    root = tmp_path / "cat"
    shutil.copytree(demo_catalog, root)
    with Ledger(root / "ledger.sqlite") as real:
        from seco_data.catalog.rebuild import catalog_meta

        rcm = catalog_meta(real)
        statements.clear()
        real.db.set_trace_callback(statements.append)
        state = {}
        assert build_parts(root, real, rcm, {0}, write_items=False, state=state) == 1
        assert not [s for s in statements if "GROUP BY" in s.upper()]
        assert state["parts"]["0"]["digest"] == list(real.part_digests(locations_per_part(rcm["seasons"]))[0])


def test_validate_sample_converts_only_the_sampled_rows_and_names_them(tmp_path, scripted, schemas, monkeypatch):
    """``--sample N`` on a large index: only the N drawn rows become item dicts (converting every row of
    the row groups they fall in made a 1,000-item sample cost 145 s at 1M locations), and a broken row
    is reported under its own row number."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import seco_data.catalog.index as index_module

    out = tmp_path / "out"
    sample(_recipe(scripted, n=4), out)
    t = pq.read_table(out / "items.parquet")
    t = pa.concat_tables([t] * 10)  # 40 rows in row groups of 7
    cloud = t.column("eo:cloud_cover").to_pylist()
    drawn = sorted(np.random.default_rng(3).choice(40, size=9, replace=False).tolist())
    bad = drawn[4]
    cloud[bad] = 150.0  # over the eo extension's maximum of 100
    t = t.set_column(t.column_names.index("eo:cloud_cover"), "eo:cloud_cover", pa.array(cloud, pa.float64()))
    pq.write_table(t, out / "items.parquet", row_group_size=7)
    converted = []
    real = index_module.items_of

    def counting(table):
        converted.append(table.num_rows)
        return real(table)

    monkeypatch.setattr(index_module, "items_of", counting)
    n, problems = validate_catalog(out, schemas, sample=9, seed=3, workers=1)
    assert sum(converted) == 9 and n == 2 + 9
    assert len(problems) == 1 and f"items.parquet row {bad} " in problems[0] and "150" in problems[0]
    converted.clear()  # whole: every row, the broken one found
    n, problems = validate_catalog(out, schemas, workers=1)
    assert sum(converted) == 40 and n == 2 + 40 and len(problems) == 1 and f"row {bad} " in problems[0]
