"""Earth Engine expressions for seco's patches, and the plan that packs them into requests.

A patch read is a ``computePixels`` request on an explicit grid (the patch's UTM transform at one
resolution). Several scenes stack into one request as bands renamed ``s<k>_<band>``, next to each
scene's ``s<k>_cloud`` and ``s<k>_valid`` bands when its masks are asked for; requests are split only
when the 48 MiB (or 1,024 band) limit would be passed. Answers are NPY bytes of a structured array
with one field per band (the wire format of ``fileFormat: NUMPY_NDARRAY``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..grid import PatchGrid
from .earthengine_client import Garbled

COLLECTIONS = {"L1C": "COPERNICUS/S2_HARMONIZED", "L2A": "COPERNICUS/S2_SR_HARMONIZED"}
#: cloud method -> (collection joined by system:index or None for the scene itself, band, test, threshold)
CLOUD_METHODS = {
    "s2cloudless": ("COPERNICUS/S2_CLOUD_PROBABILITY", "probability", "gt", 50),
    "cloudscoreplus": ("GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED", "cs", "lt", 0.6),
    "qa60": (None, "QA60", "bits", (1 << 10) | (1 << 11)),  # opaque cloud | cirrus
}
#: the valid mask: every 10 m band holds data
VALID_BANDS = ("B2", "B3", "B4", "B8")
MASK_RESOLUTION = 10
MAX_REQUEST_BYTES = 48 * 2**20
MAX_BANDS = 1024


def ee_band(name: str) -> str:
    """seco band name -> Earth Engine's (``B02`` -> ``B2``; ``B8A``, ``B11`` unchanged)."""
    return name[0] + name[1:].lstrip("0") if name[1:].isdigit() else name


def grid_spec(grid: PatchGrid, res: int) -> dict:
    """The ``grid`` of a computePixels request: the patch's transform at ``res`` metres."""
    t = grid.transform(res)
    h, w = grid.shape(res)
    return {
        "dimensions": {"width": w, "height": h},
        "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                            "shearY": t.d, "scaleY": t.e, "translateY": t.f},
        "crsCode": f"EPSG:{grid.epsg}",
    }


def asset_id(scene, collection: str) -> str:
    return scene.extra.get("asset_id") or f"{collection}/{scene.scene_id}"


def system_index(scene) -> str:
    return scene.extra.get("system_index") or scene.scene_id


def cloud_image(ee, image, scene, method: str):
    """1 where cloudy (unknown counts as cloudy), 0 elsewhere."""
    collection, band, test, value = CLOUD_METHODS[method]
    src = image if collection is None else ee.Image(f"{collection}/{system_index(scene)}")
    b = src.select([band])
    if test == "gt":
        cloudy = b.gt(value)
    elif test == "lt":
        cloudy = b.lt(value)
    else:
        cloudy = b.bitwiseAnd(value).neq(0)
    return cloudy.unmask(1)


def valid_image(ee, image):
    """1 where every 10 m band holds data (the image's own mask)."""
    return image.select(list(VALID_BANDS)).mask().reduce(ee.Reducer.min())


@dataclass
class Layer:
    """Bands of one scene in one request: pixel bands (seco names) and/or the two mask bands."""

    index: int  # the scene's position in the batch
    bands: tuple[str, ...] = ()
    masks: bool = False

    def names(self) -> list[str]:
        out = [f"s{self.index}_{b}" for b in self.bands]
        return out + ([f"s{self.index}_cloud", f"s{self.index}_valid"] if self.masks else [])


def plan(layers: list[Layer], shape: tuple[int, int], max_bytes: int | None = None) -> list[list[Layer]]:
    """Pack layers (whole scenes) into as few requests as the size and band limits allow."""
    max_bytes = max_bytes or MAX_REQUEST_BYTES
    per_band = shape[0] * shape[1] * 2  # uint16
    chunks: list[list[Layer]] = []
    size = bands = 0
    for layer in layers:
        n = len(layer.names())
        if n * per_band > max_bytes or n > MAX_BANDS:
            raise ValueError(f"one scene's {n} bands of {shape[0]}x{shape[1]} px exceed a computePixels request")
        if not chunks or size + n * per_band > max_bytes or bands + n > MAX_BANDS:
            chunks.append([])
            size = bands = 0
        chunks[-1].append(layer)
        size += n * per_band
        bands += n
    return chunks


def expression(ee, layers: list[Layer], scenes: list, collection: str, cloud: str):
    """One image holding every layer's bands, as uint16."""
    parts = []
    for layer in layers:
        scene = scenes[layer.index]
        image = ee.Image(asset_id(scene, collection))
        if layer.bands:
            parts.append(image.select([ee_band(b) for b in layer.bands], layer.names()[: len(layer.bands)]).unmask(0))
        if layer.masks:
            parts.append(cloud_image(ee, image, scene, cloud).rename([f"s{layer.index}_cloud"]))
            parts.append(valid_image(ee, image).rename([f"s{layer.index}_valid"]))
    return ee.Image.cat(parts).toUint16()


def decode(data: bytes, names: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """uint16 arrays by band name from NPY bytes; :class:`Garbled` when they are not what was asked."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any decoding failure means a garbled or cut answer
        raise Garbled(f"unreadable NPY answer ({len(data)} bytes: {type(e).__name__})") from None
    fields = arr.dtype.names or ()
    missing = [n for n in names if n not in fields]
    if arr.shape != tuple(shape) or missing:
        raise Garbled(f"NPY answer of shape {arr.shape} with fields {list(fields)[:4]}... does not match the "
                      f"request ({shape}, missing {missing[:3]})")
    out = {}
    for n in names:
        a = arr[n]
        if a.dtype.kind not in "uif" or (a.dtype.kind in "iu" and a.dtype.itemsize > 2 and a.max(initial=0) > 65535):
            raise Garbled(f"band {n} arrived as {a.dtype}, not uint16")
        out[n] = a.astype(np.uint16)
    return out
