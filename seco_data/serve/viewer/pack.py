"""Typed arrays for the pages, packed small: one deflate stream of byte-shuffled columns, in base64.

The map of a million locations cannot travel as JSON lists (a number costs 5-10 characters there,
and parsing them costs the browser seconds). A packed payload is a JSON object::

    {"packed": 1, "encoding": "deflate", "bytes": <raw length>, "data": "<base64>",
     "columns": {"name": {"type": "u16", "offset": 0, "length": n, "shuffle": true, "delta": false}, ...}}

``data`` is the zlib (RFC 1950) stream of every column's bytes, each starting at a multiple of 8.
Before compression a column of k-byte numbers is byte-shuffled (all first bytes, then all second
bytes ...: the high bytes of small numbers are runs of zeros that deflate shrinks to nothing) and a
``delta`` column holds differences from the previous value (increasing ids become small numbers).
``static/common.js`` (``seco.unpack``) inflates it with the browser's ``DecompressionStream`` and
gives back ``Uint8Array``/``Uint16Array``/``Int32Array``/``Float32Array`` ... views; it works from
``file://`` pages as well, since nothing is fetched. Little-endian, as every browser is.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

#: type codes of the packed columns and their numpy types (the JavaScript typed arrays of the same name)
TYPES = {"u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16, "u32": np.uint32, "i32": np.int32,
         "f32": np.float32, "f64": np.float64}
_CODES = {np.dtype(v).newbyteorder("<"): k for k, v in TYPES.items()}
LEVEL = 3  # zlib level: 6 is 2.4x slower for 2 % less, 1 is 25 % faster for 2 % more


def shuffle(raw: np.ndarray) -> np.ndarray:
    """The bytes of ``raw`` (1-D) grouped by byte position: all byte 0s, then all byte 1s ..."""
    k = raw.dtype.itemsize
    return raw.view(np.uint8).reshape(len(raw), k).T.copy() if k > 1 else raw.view(np.uint8)


def pack(columns: dict[str, np.ndarray], *, delta: tuple[str, ...] = (), level: int = LEVEL) -> dict:
    """The packed payload of 1-D numeric ``columns`` (see the module docstring); ``delta`` names
    integer columns to store as differences (they should mostly increase)."""
    parts: list[bytes] = []
    meta: dict[str, dict] = {}
    offset = 0
    for name, values in columns.items():
        a = np.ascontiguousarray(values)
        if a.ndim != 1:
            raise ValueError(f"column {name!r} is not 1-D: {a.shape}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        code = _CODES.get(a.dtype)
        if code is None:
            raise ValueError(f"column {name!r}: no packed type for {a.dtype}")
        is_delta = name in delta
        if is_delta:
            if a.dtype.kind not in "iu":
                raise ValueError(f"column {name!r}: only integers can be delta-coded")
            a = np.diff(a, prepend=a.dtype.type(0)).astype(a.dtype)  # wraps around like the JS sum
        body = shuffle(a).tobytes()
        meta[name] = {"type": code, "offset": offset, "length": int(len(a)), "shuffle": a.dtype.itemsize > 1,
                      "delta": is_delta}
        pad = -len(body) % 8
        parts.append(body + b"\0" * pad)
        offset += len(body) + pad
    raw = b"".join(parts)
    return {"packed": 1, "encoding": "deflate", "bytes": len(raw),
            "data": base64.b64encode(zlib.compress(raw, level)).decode("ascii"), "columns": meta}


def unpack(payload: dict) -> dict[str, np.ndarray]:
    """The columns of a packed payload (what the pages do, in Python: for tests and tools)."""
    raw = zlib.decompress(base64.b64decode(payload["data"]))
    if len(raw) != payload["bytes"]:
        raise ValueError(f"packed payload: {len(raw)} bytes inflated, {payload['bytes']} announced")
    out = {}
    for name, c in payload["columns"].items():
        dtype = np.dtype(TYPES[c["type"]]).newbyteorder("<")
        n, k = c["length"], dtype.itemsize
        body = np.frombuffer(raw, np.uint8, n * k, c["offset"])
        if c["shuffle"]:
            body = body.reshape(k, n).T
        a = np.ascontiguousarray(body).view(dtype).reshape(n)
        if c["delta"]:
            a = np.cumsum(a, dtype=dtype)
        out[name] = a
    return out
