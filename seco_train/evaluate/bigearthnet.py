"""BigEarthNet-S2 v1.0 for the multi-label benchmark: reader, 43 -> 19 class mapping, splits.

Layout (the official archive): ``ROOT/<patch>/<patch>_<band>.tif`` for the 12 L2A bands (B01..B12
without B10, with B8A; 120 x 120 px at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m) and
``ROOT/<patch>/<patch>_labels_metadata.json`` whose ``labels`` are CORINE level-3 names (43 classes).

Labels follow the 19-class BigEarthNet nomenclature of Sumbul et al., "BigEarthNet-MM: A Large-Scale,
Multimodal, Multilabel Benchmark Archive for Remote Sensing Image Classification and Retrieval"
(IEEE GRSM 2021), as in the ``bigearthnet-common`` package and torchgeo's ``BigEarthNet(num_classes=19)``:
11 of the 43 labels are dropped (not recognisable from a 1.2 km Sentinel-2 patch) and the rest are
merged into 19.

Splits are the official ``train.csv`` / ``val.csv`` / ``test.csv`` (one patch name per line); the
patches named in ``patches_with_seasonal_snow.csv`` and ``patches_with_cloud_and_shadow.csv`` are
removed from every split. ``train_frac`` keeps a seeded fraction of the train split drawn WITHOUT
replacement (the reference drew its "10 %" with replacement).

Normalisation (SECO.md section 3: evaluation inputs must look like pre-training inputs):

- ``bands="rgb"``: B04, B03, B02 through pre-training's SeCo stretch (:mod:`seco_train.views`):
  L2A DN are reflectance x 10000, so the 8-bit value is ``floor(clip(DN / 10000, 0, 1) * 255)``,
  then SeCo's per-band quantile stretch, ``/ 255`` and ImageNet mean/std.
- ``bands="all"``: the 12 bands, each bilinearly resampled to 120 px, standardised by the per-band
  DN mean/std of BigEarthNet's training set published by its authors (``BAND_STATS`` below, from
  ``bigearthnet-models-tf/BigEarthNet.py``; also the constants of SeCo's ``bigearthnet_dataset.py``).

Images are then resized to ``size`` (128 px by default, as SeCo's evaluation did; ``None`` keeps 120).

``normalise="reference"`` reproduces SeCo's ``bigearthnet_dataset.py`` instead (the ``reference`` preset,
RGB only): each band to uint8 by ``clip((DN - (mean - 2 std)) / (4 std) * 255)`` with :data:`BAND_STATS`
(truncated), the three bands as a PIL image resized to ``size`` with PIL's bicubic filter, then ``x / 255``.
``lists="reference"`` reads the reference's ``{split}.txt`` lists (google-research
remote_sensing_representations' ``bigearthnet-{split}.txt``, saved under that name) instead of the
official ``{split}.csv``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset

from seco_data.bands import DN_SCALE, to_uint8
from seco_data.errors import UsageError

from ..views import IMAGENET, seco_stretch
from .errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger(__name__)

ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
RGB_BANDS = ("B04", "B03", "B02")
BAND_SETS = {"rgb": RGB_BANDS, "all": ALL_BANDS}
PATCH_SIZE = 120
SPLITS = ("train", "val", "test")
#: "pretraining": inputs as in pre-training (module docstring); "reference": SeCo's reference reader
NORMALISE = ("pretraining", "reference")
#: "official": {split}.csv; "reference": the reference's {split}.txt
LISTS = ("official", "reference")
EXCLUSION_FILES = ("patches_with_seasonal_snow.csv", "patches_with_cloud_and_shadow.csv")

#: Per-band DN mean / std of the BigEarthNet-S2 training set, from the authors' bigearthnet-models-tf
#: (``BigEarthNet.py``); SeCo's ``datasets/bigearthnet_dataset.py`` uses the same numbers.
BAND_STATS = {
    "mean": {"B01": 340.76769064, "B02": 429.9430203, "B03": 614.21682446, "B04": 590.23569706,
             "B05": 950.68368468, "B06": 1792.46290469, "B07": 2075.46795189, "B08": 2218.94553375,
             "B8A": 2266.46036911, "B09": 2246.0605464, "B11": 1594.42694882, "B12": 1009.32729131},
    "std": {"B01": 554.81258967, "B02": 572.41639287, "B03": 582.87945694, "B04": 675.88746967,
            "B05": 729.89827633, "B06": 1096.01480586, "B07": 1273.45393088, "B08": 1365.45589904,
            "B8A": 1356.13789355, "B09": 1302.3292881, "B11": 1079.19066363, "B12": 818.86747235},
}

#: The 43 CORINE level-3 labels of BigEarthNet v1.0, in CLC code order (111, 112, 121, ...).
LABELS_43 = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

#: The 19 classes of the BigEarthNet nomenclature (Sumbul et al. 2021), in their published order.
LABELS_19 = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

#: The 11 labels the 19-class nomenclature drops.
REMOVED_IN_19 = frozenset({
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Bare rock", "Burnt areas", "Intertidal flats",
})

#: 43-class name -> 19-class name, for every label that is kept.
_MERGED = {
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Industrial or commercial units": "Industrial or commercial units",
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Pastures": "Pastures",
    "Complex cultivation patterns": "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation":
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas": "Agro-forestry areas",
    "Broad-leaved forest": "Broad-leaved forest",
    "Coniferous forest": "Coniferous forest",
    "Mixed forest": "Mixed forest",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Beaches, dunes, sands": "Beaches, dunes, sands",
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}

#: 43-class name -> index into LABELS_19, or None for the labels the 19-class version drops.
LABEL_43_TO_19: dict[str, int | None] = {
    name: (LABELS_19.index(_MERGED[name]) if name in _MERGED else None) for name in LABELS_43
}
NUM_CLASSES = len(LABELS_19)


def multi_hot(labels: Sequence[str]) -> np.ndarray:
    """(19,) float32 multi-hot of 43-class label names; raises on a name outside the 43."""
    out = np.zeros(NUM_CLASSES, dtype=np.float32)
    for name in labels:
        if name not in LABEL_43_TO_19:
            raise DatasetFormatError(f"unknown BigEarthNet label {name!r}: not one of the 43 CORINE classes")
        k = LABEL_43_TO_19[name]
        if k is not None:
            out[k] = 1.0
    return out


def read_patch_names(path: str | os.PathLike) -> list[str]:
    """Patch names of an official split / exclusion CSV: the first field of each non-empty line."""
    with open(path, encoding="utf-8") as f:
        return [line.split(",")[0].strip() for line in f if line.strip()]


def locate(root: Path, name: str, given: str | os.PathLike | None = None) -> Path:
    """``given``, else ``name`` in ROOT's parent, else in ROOT; raises naming every place tried."""
    tried = [Path(given)] if given is not None else [root.parent / name, root / name]
    for p in tried:
        if p.is_file():
            return p
    raise DatasetNotFoundError(
        f"BigEarthNet file {name} not found (looked at {', '.join(str(p) for p in tried)})",
        hint=f"download {name} from the official BigEarthNet split files and put it beside {root}, or pass its path")


@functools.lru_cache(maxsize=4)
def seco_rgb_lut(band: str) -> torch.Tensor:
    """float32 table uint16 DN (reflectance x 10000, L1C or L2A) -> network input of ``band`` (B02, B03 or
    B04): pre-training's SeCo stretch, then ImageNet mean/std. Index it with the DN."""
    dn = np.arange(65536, dtype=np.uint16)
    mean, std = IMAGENET[band]
    value = seco_stretch(to_uint8(dn, DN_SCALE), band).astype(np.float32) / np.float32(255)
    return torch.from_numpy((value - np.float32(mean)) / np.float32(std))


def read_band(path: Path) -> np.ndarray:
    """One single-band GeoTIFF as a 2-D array."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def load_patch(folder: Path, bands: Sequence[str], size: int | None = 128, stats: dict | None = None) -> torch.Tensor:
    """(C, H, W) float32 normalised image of one patch folder (see the module docstring).

    ``stats`` (band -> ``{"mean", "std"}`` of reflectance, as ``seco-train stats`` writes them) replaces
    :data:`BAND_STATS` for non-RGB band sets: ``(DN * 1e-4 - mean) / std``, pre-training's ``stats`` stretch.
    """
    name = folder.name
    rgb = tuple(bands) == RGB_BANDS
    out = torch.empty((len(bands), PATCH_SIZE, PATCH_SIZE), dtype=torch.float32)
    for c, band in enumerate(bands):
        path = folder / f"{name}_{band}.tif"
        if not path.is_file():
            raise DatasetNotFoundError(f"BigEarthNet band file missing: {path}")
        dn = read_band(path)
        if rgb:
            if dn.dtype != np.uint16:
                raise DatasetFormatError(f"{path}: expected uint16 DN, found {dn.dtype}")
            img = seco_rgb_lut(band)[torch.from_numpy(dn.astype(np.int64))]
        elif stats is not None:
            img = (torch.from_numpy(dn.astype(np.float32)) * DN_SCALE - float(stats[band]["mean"])) / float(stats[band]["std"])
        else:
            img = (torch.from_numpy(dn.astype(np.float32)) - BAND_STATS["mean"][band]) / BAND_STATS["std"][band]
        if img.shape != (PATCH_SIZE, PATCH_SIZE):
            img = nnf.interpolate(img[None, None], size=(PATCH_SIZE, PATCH_SIZE), mode="bilinear",
                                  align_corners=False)[0, 0]
        out[c] = img
    if size is not None and size != PATCH_SIZE:
        out = nnf.interpolate(out[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return out


def reference_uint8(dn: np.ndarray, band: str) -> np.ndarray:
    """The reference's per-band 8-bit conversion: ``clip((DN - (mean - 2 std)) / (4 std) * 255, 0, 255)``
    truncated to uint8, with :data:`BAND_STATS`."""
    mean, std = BAND_STATS["mean"][band], BAND_STATS["std"][band]
    lo, hi = mean - 2 * std, mean + 2 * std
    return np.clip((dn.astype(np.float64) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def load_patch_reference(folder: Path, bands: Sequence[str], size: int | None = 128) -> torch.Tensor:
    """(3, size, size) float32 image of one patch folder as SeCo's reference reader and transform make it."""
    from PIL import Image

    name = folder.name
    channels = []
    for band in bands:
        path = folder / f"{name}_{band}.tif"
        if not path.is_file():
            raise DatasetNotFoundError(f"BigEarthNet band file missing: {path}")
        channels.append(reference_uint8(read_band(path), band))
    img = Image.fromarray(np.dstack(channels))
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))).float().div_(255.0)


def load_labels(folder: Path) -> list[str]:
    """The 43-class label names of one patch folder."""
    path = folder / f"{folder.name}_labels_metadata.json"
    try:
        with open(path, encoding="utf-8") as f:
            return list(json.load(f)["labels"])
    except FileNotFoundError:
        raise DatasetNotFoundError(f"BigEarthNet labels missing: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetFormatError(f"{path}: not a BigEarthNet labels file ({e})") from None


class BigEarthNet(Dataset):
    """One split of BigEarthNet-S2 v1.0 with 19-class targets.

    Items are ``(image, target)``: image float32 (C, size, size), target float32 (19,) multi-hot.
    ``split_file`` defaults to ``<split>.csv`` and ``exclude`` to the two official exclusion lists,
    each looked for in ROOT's parent, then ROOT; ``exclude=()`` applies none. ``train_frac`` keeps
    ``round(train_frac * N)`` (at least 1) train patches drawn without replacement with ``seed``,
    in split order. ``transform`` (optional) maps the image tensor, e.g. for augmentation. ``stats``
    (``bands="all"`` only): the pre-training statistics JSON's band -> ``{"mean", "std"}`` of reflectance,
    used instead of :data:`BAND_STATS` so that inputs match a backbone pre-trained with ``stretch="stats"``.
    """

    num_classes = NUM_CLASSES
    classes = LABELS_19

    def __init__(self, root: str | os.PathLike, split: str = "train", bands: str = "rgb", size: int | None = 128,
                 train_frac: float = 1.0, seed: int = 0, split_file: str | os.PathLike | None = None,
                 exclude: Sequence[str | os.PathLike] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, stats: dict | None = None,
                 normalise: str = "pretraining", lists: str = "official"):
        self.root = Path(root)
        if normalise not in NORMALISE or lists not in LISTS:
            raise UsageError(f"BigEarthNet normalise must be one of {', '.join(NORMALISE)} and lists one of "
                             f"{', '.join(LISTS)}, not {normalise!r} / {lists!r}")
        if normalise == "reference" and bands != "rgb":
            raise UsageError("BigEarthNet normalise='reference' (the reference reader) is RGB only",
                             hint="use the default normalisation for bands='all'")
        self.normalise, self.lists = normalise, lists
        if split not in SPLITS:
            raise UsageError(f"unknown BigEarthNet split {split!r}: expected one of {', '.join(SPLITS)}")
        if bands not in BAND_SETS:
            raise UsageError(f"bands must be one of {', '.join(BAND_SETS)}, not {bands!r}")
        if not 0.0 < train_frac <= 1.0:
            raise UsageError(f"train_frac must be in (0, 1], got {train_frac}")
        if train_frac < 1.0 and split != "train":
            raise UsageError(f"train_frac subsamples the train split only; split={split!r} is always used whole")
        if stats is not None and bands != "rgb" and any(not float(stats.get(b, {}).get("std", 0)) > 0 for b in BAND_SETS[bands]):
            raise UsageError(f"stats must give a mean and a positive std for each of {', '.join(BAND_SETS[bands])}")
        if size is not None and size < 1:
            raise UsageError(f"size must be a positive integer or None, got {size}")
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"BigEarthNet folder not found: {self.root}",
                                       hint="pass the folder that holds the patch folders (BigEarthNet-v1.0)")
        self.split, self.bands, self.size, self.transform = split, BAND_SETS[bands], size, transform
        self.stats = stats
        self.split_file = locate(self.root, f"{split}.{'txt' if lists == 'reference' else 'csv'}", split_file)
        exclude_files = ([locate(self.root, n) for n in EXCLUSION_FILES] if exclude is None
                         else [locate(self.root, Path(p).name, p) for p in exclude])
        excluded: set[str] = set()
        for p in exclude_files:
            excluded.update(read_patch_names(p))
        listed = read_patch_names(self.split_file)
        patches = [p for p in listed if p not in excluded]
        self.excluded = len(listed) - len(patches)
        missing = [p for p in patches if not (self.root / p).is_dir()]
        if missing:
            raise DatasetNotFoundError(
                f"{len(missing)} patch folder(s) of {self.split_file.name} are not in {self.root}, e.g. {missing[0]}",
                hint="check that ROOT is the extracted BigEarthNet-v1.0 folder and the CSVs belong to it")
        if not patches:
            raise DatasetFormatError(f"{self.split_file} leaves no patch after the exclusion lists")
        self.total = len(patches)
        if train_frac < 1.0:
            n = max(1, round(train_frac * len(patches)))
            keep = np.sort(np.random.default_rng(seed).choice(len(patches), size=n, replace=False))
            patches = [patches[i] for i in keep]
        self.patches = patches
        self.train_frac, self.seed = train_frac, seed
        log.info("BigEarthNet %s: %d patches (%d excluded, fraction %.3g of %d, seed %d)", split, len(patches),
                 self.excluded, train_frac, self.total, seed)

    def __len__(self) -> int:
        return len(self.patches)

    def labels(self, index: int) -> list[str]:
        """The 43-class label names of item ``index``."""
        return load_labels(self.root / self.patches[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        folder = self.root / self.patches[index]
        if self.normalise == "reference":
            image = load_patch_reference(folder, self.bands, self.size)
        else:
            image = load_patch(folder, self.bands, self.size, self.stats if self.bands != RGB_BANDS else None)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.from_numpy(multi_hot(load_labels(folder)))


class BigEarthNetBenchmark(BigEarthNet):
    """:class:`BigEarthNet` with the interface the evaluator asks of a benchmark dataset
    (``dataset(root, split, split_file=, size=, **options)``, ``targets``, ``in_channels``,
    ``split_files``, ``fingerprint``). Targets are read from the label JSONs, not the images."""

    def __init__(self, root, split: str = "train", split_file=None, size: int | None = 128, **options):
        super().__init__(root, split, split_file=split_file, size=size, **options)
        self.split_files = [self.split_file]
        self.item_ids = list(self.patches)
        key = json.dumps([str(self.root.resolve()), split, self.patches, list(self.bands), size, self.normalise])
        self.fingerprint = hashlib.sha256(key.encode()).hexdigest()

    @functools.cached_property
    def targets(self) -> np.ndarray:
        return np.stack([multi_hot(load_labels(self.root / p)) for p in self.patches]) if self.patches else \
            np.zeros((0, NUM_CLASSES), np.float32)

    @property
    def in_channels(self) -> int:
        return len(self.bands)


def _register() -> None:
    from .registry import BENCHMARKS, Benchmark, register

    if "bigearthnet" not in BENCHMARKS:
        register(Benchmark(
            name="bigearthnet", task="multilabel", num_classes=NUM_CLASSES, metric="map_micro",
            default_protocol="linear", dataset=BigEarthNetBenchmark, default_root=None, size=128,
            description="BigEarthNet-S2 v1.0, 19 classes (43 -> 19), 120 px resized to 128; micro/macro mAP "
                        "over the whole split; snow/cloud patches excluded",
        ))


_register()
