"""Offline validation of a STAC catalog against the official STAC and extension JSON Schemas.

Schemas are read from a local folder laid out as their URLs (``schemas.stacspec.org/v1.1.0/...``),
never from the network: an unknown schema URL is an error, not a download. Each schema file is read
and parsed once per process.

What is validated: every catalog and collection reachable from ``catalog.json``, and every item: the
item JSON files of a per-patch catalog, the rows of ``items.parquet`` (its catalog of record) for a
compact one. Items are validated in batches on worker processes; ``sample=N`` validates a seeded
sample of N items for catalogs too large to check whole.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urldefrag, urlsplit

from .. import jobs
from ..errors import CatalogError, UsageError
from .layout import CATALOG, INDEX

CORE = {
    "Feature": "https://schemas.stacspec.org/v{v}/item-spec/json-schema/item.json",
    "Catalog": "https://schemas.stacspec.org/v{v}/catalog-spec/json-schema/catalog.json",
    "Collection": "https://schemas.stacspec.org/v{v}/collection-spec/json-schema/collection.json",
}
BATCH = 256


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text("utf-8"))


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

        @functools.lru_cache(maxsize=None)
        def retrieve(uri: str):
            parts = urlsplit(urldefrag(uri)[0])
            path = self.root / parts.netloc / parts.path.lstrip("/")
            if not path.is_file():
                raise LookupError(f"schema not stored locally: {uri}")
            return Resource.from_contents(_load(str(path)), default_specification=DRAFT7)

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


def walk(root_file: Path, *, items: bool = True) -> Iterator[tuple[Path, dict]]:
    """Every STAC object reachable from ``root_file`` through child (and, with ``items``, item) links."""
    stack = [root_file.resolve()]
    seen = set()
    follow = ("child", "item") if items else ("child",)
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
            if link.get("rel") in follow:
                stack.append((path.parent / link["href"]).resolve())


def _check(batch: list) -> list[str]:
    """Validate a batch of items (dicts, or paths of item JSON files) on a worker."""
    v: SchemaValidator = jobs.context()
    problems = []
    for where, obj in batch:
        if obj is None:
            try:
                obj = json.loads(Path(where).read_text("utf-8"))
            except (OSError, ValueError) as e:
                problems.append(f"{where}: cannot read: {e}")
                continue
        problems += [f"{where}: {e}" for e in v.errors(obj)]
    return problems


def _items(root: Path, sample: int | None, seed: int) -> Iterator[tuple[str, dict | None]]:
    """(where, item dict or None to read from ``where``) of the items to validate."""
    import numpy as np

    from .index import IndexFile, item_json_href, items_of

    index = IndexFile(root / INDEX)
    compact = "seco:seasons" in index.names
    n = index.num_rows
    keep = None
    if sample is not None and sample < n:
        keep = set(np.random.default_rng(seed).choice(n, size=sample, replace=False).tolist())
    first = 0  # the row group's first row
    for g, size in enumerate(index.row_group_sizes()):
        rows = range(first, first + size) if keep is None else [r for r in range(first, first + size) if r in keep]
        if rows:
            table = index.read_row_group(g)
            if keep is not None:  # only the sampled rows become item dicts (the conversion is the cost)
                table = table.take([r - first for r in rows])
            for row, item in zip(rows, items_of(table)):
                if compact:
                    yield f"{INDEX} row {row} ({item['id']})", item
                else:
                    href = item_json_href(item)
                    if href is None:
                        yield f"{INDEX} row {row} ({item['id']})", item
                    else:
                        yield str((root / href).resolve()), None
        first += size


def validate_catalog(root: str | Path, schema_root: str | Path | None = None, *, sample: int | None = None,
                     workers: int | None = None, seed: int = 0) -> tuple[int, list[str]]:
    """Validate the catalog in ``root`` (see the module docstring); return (objects checked, error lines)."""
    schema_root = schema_root or os.environ.get("SECO_STAC_SCHEMAS")
    if not schema_root:
        raise CatalogError("no schema folder given", hint="pass --schemas DIR or set SECO_STAC_SCHEMAS")
    if sample is not None and sample < 1:
        raise UsageError(f"--sample must be at least 1, got {sample}")
    v = SchemaValidator(schema_root)
    root = Path(root)
    root_file = root / CATALOG
    if not root_file.is_file():
        raise CatalogError(f"no {CATALOG} in {root}", hint="point at the --out folder of seco-data sample")
    n, problems = 0, []
    for path, obj in walk(root_file, items=False):
        n += 1
        problems += [f"{path}: {e}" for e in v.errors(obj)]
    if not (root / INDEX).is_file():
        return n, problems

    def batches():
        batch = []
        for entry in _items(root, sample, seed):
            batch.append(entry)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    pool = jobs.Pool(jobs.cap_workers(workers, "process"), kind="process", local=True, setup=lambda: SchemaValidator(schema_root))
    with pool:
        for batch, found in jobs.run(pool, _check, ((b,) for b in batches()), ordered=True):
            n += len(batch[0])
            problems += found
    return n, problems
