"""How a shard stores an array: the encodings of sample members, written by the export and decoded
by the reader.

``npy``  (member ``<group>.npy``)
    The array as a ``.npy`` file: what ``np.load`` and every WebDataset decoder read.
``zstd`` (member ``<group>.npy.zst``)
    Lossless, about 0.6 x the bytes of ``npy`` on Sentinel-2 DN (``bench/bench_scale.py``): the
    array's bytes are split into planes (all first bytes of the values, then all second bytes, the
    "byte shuffle" of Blosc and HDF5: the high bytes of 16-bit DN are nearly constant), saved as a
    ``.npy`` of ``uint8`` with shape ``(itemsize, count)``, and that file compressed as one standard
    zstd frame (level 1: higher levels gain < 1 % here for 3-6 x the time). Anyone can read it:
    ``zstd -d`` gives the ``.npy``, ``np.load`` the planes, and
    ``planes.T.copy().view(dtype).reshape(shape)`` the array (shape and dtype are in the sample's
    JSON, ``arrays.<group>``). :func:`decode_member` does all of it, from the member alone.

Both encodings round-trip bit for bit. What is stored (``--dtype``, :data:`DTYPES`):

``stored``
    The catalog's values (uint16 DN for collected catalogs).
``uint8``
    SeCo's 8-bit: ``floor(clip(DN * scale, 0, 1) * 255)`` (reflectance clipped to [0, 1], x 255,
    truncated: :func:`seco_data.bands.to_uint8`, the release's own conversion), stored with ``scale``
    1/255; the sample JSON keeps the catalog's ``source_dtype`` and ``source_scale``. Half the bytes
    of uint16, and lossless for RGB pre-training with ``seco-train``'s default stretch (it starts with
    this very conversion); for the ``stats`` stretch it quantises reflectance to steps of 1/255 and
    clips it at 1.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np

from ..bands import to_uint8

#: encoding -> member suffix after the group name
ENCODINGS = {"npy": ".npy", "zstd": ".npy.zst"}
#: what an export stores (module docstring)
DTYPES = ("stored", "uint8")
ZSTD_LEVEL = 1
_ZSTD_MAGIC = 0xFD2FB528


def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The exact header ``np.save`` writes for an array of ``shape`` and ``dtype`` (C order)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def member_name(group: str, encoding: str) -> str:
    return group + ENCODINGS[encoding]


def decode_npy(data: bytes | memoryview) -> np.ndarray:
    """A read-only array over ``data`` (the bytes of a ``.npy`` file), without copying."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
    count = int(np.prod(shape))
    if count * dtype.itemsize != len(data) - buf.tell():
        raise ValueError(f"array of {shape} {dtype} does not match its {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def _codec():
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=ZSTD_LEVEL)


def encode_zstd(arr: np.ndarray) -> bytes:
    """The ``zstd`` member of ``arr`` (see the module docstring)."""
    arr = np.ascontiguousarray(arr)
    planes = arr.reshape(-1).view(np.uint8).reshape(-1, arr.dtype.itemsize).T
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(planes))
    return _codec().compress(buf.getvalue(), asbytes=True)


def zstd_content_size(data: bytes | memoryview) -> int:
    """The decompressed size a zstd frame declares in its header (RFC 8878, 3.1.1.1)."""
    if len(data) < 6 or struct.unpack_from("<I", data, 0)[0] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    fhd = data[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if not width:
        raise ValueError("the zstd frame does not declare its size")
    if len(data) < pos + width:
        raise ValueError("truncated zstd frame header")
    value = int.from_bytes(bytes(data[pos:pos + width]), "little")
    return value + 256 if width == 2 else value


def decode_zstd(data: bytes | memoryview, shape=None, dtype=None) -> np.ndarray:
    """The array of a ``zstd`` member; ``shape``/``dtype`` (from the sample's JSON) are checked when
    given, else the result is flat."""
    raw = _codec().decompress(data, decompressed_size=zstd_content_size(data), asbytes=True)
    planes = decode_npy(raw)
    if planes.dtype != np.uint8 or planes.ndim != 2:
        raise ValueError(f"zstd member holds {planes.dtype} {planes.shape}, not byte planes")
    itemsize, count = planes.shape
    if dtype is None:
        dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize]
    dtype = np.dtype(dtype)
    if dtype.itemsize != itemsize:
        raise ValueError(f"zstd member has {itemsize}-byte values, not {dtype}")
    arr = np.ascontiguousarray(planes.T).view(dtype).reshape(-1)
    if shape is not None:
        if int(np.prod(shape)) != count:
            raise ValueError(f"zstd member holds {count} values, not {tuple(shape)}")
        arr = arr.reshape(shape)
    return arr


def decode_member(ext: str, data: bytes | memoryview, spec: dict | None = None) -> np.ndarray:
    """Decode an array member by its extension (``10m.npy`` or ``10m.npy.zst``); ``spec`` is the
    sample JSON's ``arrays.<group>`` entry (shape and dtype), needed to shape a zstd member."""
    if ext.endswith(".npy.zst"):
        return decode_zstd(data, *((spec["shape"], spec["dtype"]) if spec else (None, None)))
    return decode_npy(data)


@functools.lru_cache(maxsize=16)
def _uint8_table(dtype: str, scale: float) -> np.ndarray:
    return to_uint8(np.arange(np.iinfo(dtype).max + 1, dtype=dtype), scale)


def convert_uint8(values: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """The ``uint8`` dtype of ``values`` stored at ``scale`` (module docstring), written into ``out``."""
    if values.dtype in (np.uint8, np.uint16):
        return np.take(_uint8_table(values.dtype.name, scale), values, out=out)
    out[...] = to_uint8(values, scale)
    return out
