"""The API's OpenAPI 3.0 description (landing page link ``service-desc``) and a small HTML page
describing it (``service-doc``), as STAC API - Core asks for."""

from __future__ import annotations

import html

#: path of the description under /api (``/api/api``, as stac-fastapi names it); ``.html``: the doc page
OPENAPI = "api"
SERVICE_DESC = "application/vnd.oai.openapi+json;version=3.0"

_ERROR = {"description": "an error", "content": {"application/json": {"schema": {
    "type": "object", "required": ["code"],
    "properties": {"code": {"type": "string"}, "description": {"type": "string"}}}}}}


def _param(name: str, where: str, schema: dict, description: str, required: bool = False, **extra) -> dict:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description,
            **extra}


_SEARCH_PARAMS = [
    _param("bbox", "query", {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6},
           "west,south,east,north (WGS 84)", style="form", explode=False),
    _param("intersects", "query", {"type": "string"}, "a GeoJSON geometry (JSON)"),
    _param("datetime", "query", {"type": "string"},
           "an RFC 3339 date-time with a time zone, or an interval (open ends: '..')"),
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10},
           "items per page (larger values are clamped)"),
    _param("ids", "query", {"type": "array", "items": {"type": "string"}}, "item ids", style="form",
           explode=False),
    _param("collections", "query", {"type": "array", "items": {"type": "string"}}, "collection ids",
           style="form", explode=False),
    _param("token", "query", {"type": "string"}, "paging token from a next link"),
]


def _ok(description: str, media: str = "application/json") -> dict:
    return {"200": {"description": description, "content": {media: {"schema": {"type": "object"}}}},
            "400": _ERROR, "404": _ERROR, "500": _ERROR}


def openapi(api: str, collection_id: str) -> dict:
    """The OpenAPI 3.0 document of the API served at ``api`` (an absolute URL)."""
    geojson = "application/geo+json"
    item_params = [p for p in _SEARCH_PARAMS if p["name"] not in ("ids", "collections")]
    cid = _param("collectionId", "path", {"type": "string", "enum": [collection_id]}, "collection id", True)
    return {
        "openapi": "3.0.3",
        "info": {"title": "seco catalog STAC API", "version": "1.0.0",
                 "description": "Read-only STAC API over a seco catalog's items.parquet "
                                "(seco-data catalog serve)."},
        "servers": [{"url": api}],
        "paths": {
            "/": {"get": {"summary": "landing page", "responses": _ok("the landing page")}},
            "/conformance": {"get": {"summary": "conformance classes", "responses": _ok("conformance")}},
            "/collections": {"get": {"summary": "collections", "responses": _ok("the collections")}},
            "/collections/{collectionId}": {"get": {"summary": "a collection", "parameters": [cid],
                                                    "responses": _ok("the collection")}},
            "/collections/{collectionId}/items": {"get": {
                "summary": "the collection's items, paged", "parameters": [cid, *item_params],
                "responses": _ok("an ItemCollection", geojson)}},
            "/collections/{collectionId}/items/{featureId}": {"get": {
                "summary": "one item",
                "parameters": [cid, _param("featureId", "path", {"type": "string"}, "item id", True)],
                "responses": _ok("the item", geojson)}},
            "/search": {
                "get": {"summary": "item search", "parameters": _SEARCH_PARAMS,
                        "responses": _ok("an ItemCollection", geojson)},
                "post": {"summary": "item search",
                         "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                         "responses": _ok("an ItemCollection", geojson)},
            },
        },
    }


def service_doc(api: str) -> str:
    """A small HTML page naming the API's endpoints and search parameters."""
    rows = "".join(f"<li><code>{html.escape(p['name'])}</code>: {html.escape(p['description'])}</li>"
                   for p in _SEARCH_PARAMS)
    a = html.escape(api)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>seco STAC API</title></head><body>"
            f"<h1>seco STAC API</h1><p>Read-only STAC API 1.0 (core, collections, features, item search). "
            f"OpenAPI description: <a href='{a}/{OPENAPI}'>{a}/{OPENAPI}</a>.</p>"
            f"<p>Endpoints: <code>/</code>, <code>/conformance</code>, <code>/collections</code>, "
            f"<code>/collections/{{id}}/items</code>, <code>/collections/{{id}}/items/{{itemId}}</code>, "
            f"<code>/search</code> (GET and POST).</p><p>Search parameters:</p><ul>{rows}</ul></body></html>")
