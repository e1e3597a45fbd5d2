"""Offline validation of a STAC catalog against the official STAC and extension JSON Schemas.

Schemas are read from a local folder laid out as their URLs (``schemas.stacspec.org/v1.1.0/...``),
never from the network: an unknown schema URL is an error, not a download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urldefrag, urlsplit

from ..errors import CatalogError
from .layout import CATALOG

CORE = {
    "Feature": "https://schemas.stacspec.org/v{v}/item-spec/json-schema/item.json",
    "Catalog": "https://schemas.stacspec.org/v{v}/catalog-spec/json-schema/catalog.json",
    "Collection": "https://schemas.stacspec.org/v{v}/collection-spec/json-schema/collection.json",
}


class SchemaValidator:
    def __init__(self, schema_root: str | Path):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        self.root = Path(schema_root)
        if not self.root.is_dir():
            raise CatalogError(
                f"schema folder {self.root} does not exist",
                hint="pass --schemas (a folder laid out as schema URLs) or set SECO_STAC_SCHEMAS",
            )

        def retrieve(uri: str):
            parts = urlsplit(urldefrag(uri)[0])
            path = self.root / parts.netloc / parts.path.lstrip("/")
            if not path.is_file():
                raise LookupError(f"schema not stored locally: {uri}")
            return Resource.from_contents(json.loads(path.read_text("utf-8")), default_specification=DRAFT7)

        self._retrieve = retrieve
        self.registry = Registry(retrieve=retrieve)
        self._validators: dict[str, object] = {}

    def _validator(self, url: str):
        v = self._validators.get(url)
        if v is None:
            from jsonschema.validators import validator_for

            try:
                schema = self._retrieve(url).contents
            except LookupError as e:
                raise CatalogError(str(e), hint=f"add the schema under {self.root}") from None
            cls = validator_for(schema)
            v = self._validators[url] = cls(schema, registry=self.registry)
        return v

    def errors(self, obj: dict) -> Iterator[str]:
        kind = obj.get("type")
        if kind not in CORE:
            yield f"unknown STAC object type {kind!r}"
            return
        urls = [CORE[kind].format(v=obj.get("stac_version", "1.1.0"))] + list(obj.get("stac_extensions", []))
        for url in urls:
            for err in self._validator(url).iter_errors(obj):
                where = "/".join(str(p) for p in err.absolute_path) or "<root>"
                yield f"{url.rsplit('/', 3)[-3] if 'extensions' in url else kind}: {where}: {err.message[:200]}"


def walk(root_file: Path) -> Iterator[tuple[Path, dict]]:
    """Every STAC object reachable from ``root_file`` through child and item links."""
    stack = [root_file.resolve()]
    seen = set()
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            obj = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogError(f"cannot read STAC file {path}: {e}") from None
        yield path, obj
        for link in obj.get("links", []):
            if link.get("rel") in ("child", "item"):
                stack.append((path.parent / link["href"]).resolve())


def validate_catalog(root: str | Path, schema_root: str | Path | None = None) -> tuple[int, list[str]]:
    """Validate every object under ``root/catalog.json``; return (objects checked, error lines)."""
    schema_root = schema_root or os.environ.get("SECO_STAC_SCHEMAS")
    if not schema_root:
        raise CatalogError("no schema folder given", hint="pass --schemas DIR or set SECO_STAC_SCHEMAS")
    v = SchemaValidator(schema_root)
    root_file = Path(root) / CATALOG
    if not root_file.is_file():
        raise CatalogError(f"no catalog.json in {root}", hint="point at the --out folder of seco-data sample")
    n, problems = 0, []
    for path, obj in walk(root_file):
        n += 1
        problems += [f"{path}: {e}" for e in v.errors(obj)]
    return n, problems
