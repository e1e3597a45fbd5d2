"""items.parquet read by the field's own clients: stac-geoparquet -> pystac resolves every href of
every row to an existing file (both layouts), and the rows are valid STAC 1.1 items."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest


def rows(root: Path) -> list[dict]:
    from stac_geoparquet.arrow import stac_table_to_items

    return list(stac_table_to_items(pq.read_table(root / "items.parquet")))


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_stac_geoparquet_to_pystac_resolves_every_href(layout, demo_catalog, per_patch_catalog):
    import pystac

    root = demo_catalog if layout == "compact" else per_patch_catalog
    index = root / "items.parquet"
    checked = 0
    for d in rows(root):
        assert not any(link["rel"] == "self" for link in d["links"])  # a relative self link moves the base
        # relative hrefs resolve against the document holding them: items.parquet, at the catalog root
        item = pystac.Item.from_dict(d, href=str(index), migrate=False)
        hrefs = [a.get_absolute_href() for a in item.assets.values()]
        hrefs += [link.get_absolute_href() for link in item.links if link.rel != "self"]
        for href in hrefs:
            assert href and Path(href).is_file() and Path(href).resolve().is_relative_to(root.resolve()), href
            checked += 1
        alternate = [link for link in item.links if link.rel == "alternate"]
        if layout == "per-patch":  # the row's item JSON, read by pystac, points at the same files
            on_file = pystac.Item.from_file(alternate[0].get_absolute_href())
            assert on_file.id == item.id
            assert {k: Path(a.get_absolute_href()).resolve() for k, a in on_file.assets.items()} == \
                {k: Path(a.get_absolute_href()).resolve() for k, a in item.assets.items()}
        else:
            assert not alternate
    assert checked > 20


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_index_rows_are_valid_stac_items(layout, demo_catalog, per_patch_catalog, schemas):
    from seco_data.catalog.validate import validate_catalog

    root = demo_catalog if layout == "compact" else per_patch_catalog
    n, errors = validate_catalog(root, schemas)
    assert errors == [] and n > 5
    for d in rows(root)[:3]:
        assert json.loads(json.dumps(d))["stac_version"] == "1.1.0"


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_stac_validator_opens_every_href_of_every_row(layout, demo_catalog, per_patch_catalog, schemas, monkeypatch):
    """stac-validator (links and assets opened) over every items.parquet row, as the STAC API serves it
    (the rows' hrefs resolved against the catalog's URL): valid, and every href answers."""
    import urllib.request

    import stac_validator.utilities as utilities
    from stac_validator.stac_validator import StacValidate

    from seco_data.serve.server import start_server

    for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)
    fetch = utilities.fetch_and_parse_file

    def offline(path, headers=None):
        if path.startswith("https://"):
            return json.loads((schemas / path.split("://", 1)[1].split("#")[0]).read_text())
        return fetch(path, headers)

    monkeypatch.setattr(utilities, "fetch_and_parse_file", offline)
    root = demo_catalog if layout == "compact" else per_patch_catalog
    server, url = start_server(root)
    try:
        page = json.load(urllib.request.urlopen(f"{url}/api/search?limit=1000"))
        assert len(page["features"]) == len(rows(root))
        for item in page["features"]:
            v = StacValidate(links=True, assets=True, assets_open_urls=True)
            assert v.validate_dict(item), v.message
            checked = v.message[-1]
            for part in ("links_validated", "assets_validated"):
                assert checked[part]["request_invalid"] == [] and checked[part]["request_valid"], (part, checked)
    finally:
        server.shutdown()
        server.server_close()
