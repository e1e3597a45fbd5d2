"""EuroSAT (Helber et al., 2019): 27,000 Sentinel-2 patches, 64 x 64 px, 10 land-cover classes.

Layouts read (``root`` may be the extracted archive's folder or the class folders' parent):

- RGB (``bands="rgb"``): ``2750/<Class>/<Class>_<n>.jpg`` (``EuroSAT.zip``), 8-bit RGB JPEGs,
  normalised by :func:`seco_train.evaluate.transforms.rgb8` (``x / 255``, then ImageNet mean/std: the
  last step of pre-training's SeCo stretch; the JPEGs already are 8-bit renderings, so no quantile
  stretch). ``normalise="unit"`` gives ``x / 255`` alone, what SeCo's EuroSAT script did
  (``T.ToTensor()``; the ``reference`` preset);
- 13 bands (``bands="all"``): ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``
  (``EuroSATallBands.zip``), uint16 L1C digital numbers B01-B12 then B8A (the files' order; returned
  in the canonical order :data:`BANDS_ALL`, B8A after B08), normalised by
  :func:`~seco_train.evaluate.transforms.reflectance` with the pre-training statistics (``stats``).

Splits are files, ``splits/{train,val,test}.txt`` under ``root`` (or ``split_file``), one
``<Class>/<file>`` per line; ``.jpg`` entries also name the ``.tif`` of the same patch. The reference
script's lists are also read (``lists="reference"``: ``{train,val}.txt`` beside the class folders, one
``<Class>_<n>.jpg`` per line, the class being the name before ``_``); where they are missing, the
``splits/`` lists are used and :attr:`EuroSAT.split_note` says so.
Labels are the index of the class folder in the official (alphabetical) order, :data:`CLASSES`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from seco_data.errors import UsageError
from seco_data.outputs import sha256_file

from . import transforms
from .errors import DatasetFormatError, DatasetNotFoundError
from .registry import Benchmark, register

log = logging.getLogger(__name__)

CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
           "PermanentCrop", "Residential", "River", "SeaLake")
#: the 13 bands as the dataset returns them (canonical order, B8A after B08)
BANDS_ALL = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: the band order INSIDE the released TIFs: B8A is the 13th band (phelber/EuroSAT#7; torchgeo fixed its
#: reader in torchgeo#2480 after assuming the paper's order); reordered to BANDS_ALL on reading
TIF_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
_TIF_ORDER = [TIF_BANDS.index(b) for b in BANDS_ALL]
URL_RGB = "https://madm.dfki.de/files/sentinel/EuroSAT.zip"
URL_ALL = "https://madm.dfki.de/files/sentinel/EuroSATallBands.zip"
RGB_DIR = "2750"
TIF_DIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
SPLITS = ("train", "val", "test")
#: "imagenet": x / 255 then ImageNet mean/std (pre-training's last step); "unit": x / 255 (the reference script)
NORMALISE = ("imagenet", "unit")
#: "splits": ROOT/splits/{split}.txt; "reference": the reference's {split}.txt beside the class folders
LISTS = ("splits", "reference")


class EuroSAT(Dataset):
    """EuroSAT patches of one split: item ``i`` is ``(C x size x size float tensor, class index)``.

    ``split``: ``train`` / ``val`` / ``test`` (read from ``root/splits/<split>.txt``) or ``all``
    (every patch in the class folders); ``split_file`` overrides the list. ``size``: images are
    resized (bilinear, antialiased) when it differs from the native 64 px. ``transform`` is applied to
    the normalised tensor.
    """

    classes = list(CLASSES)

    def __init__(self, root, split: str = "train", bands: str = "rgb", split_file=None, size: int | None = 64,
                 transform=None, stats: dict | None = None, normalise: str = "imagenet", lists: str = "splits"):
        if bands not in ("rgb", "all"):
            raise DatasetNotFoundError(f"EuroSAT bands must be 'rgb' or 'all', not {bands!r}")
        if normalise not in NORMALISE or lists not in LISTS:
            raise UsageError(f"EuroSAT normalise must be one of {', '.join(NORMALISE)} and lists one of "
                             f"{', '.join(LISTS)}, not {normalise!r} / {lists!r}")
        if normalise == "unit" and bands != "rgb":
            raise UsageError("EuroSAT normalise='unit' (the reference's x / 255) applies to the RGB JPEGs only")
        self.root = Path(root)
        self.split, self.bands, self.size, self.transform, self.stats = split, bands, size, transform, stats
        self.normalise, self.lists = normalise, lists
        self.split_note: str | None = None
        if bands == "all" and stats is None:
            raise DatasetNotFoundError("EuroSAT bands='all' needs the pre-training band statistics (stats=...)",
                                       hint="pass the JSON from `seco-train stats` the backbone was trained with")
        self.image_dir = self._image_dir()
        self.split_files: list[Path] = []
        if split_file is None and split == "all":
            names = sorted(f"{c}/{p.name}" for c in CLASSES if (self.image_dir / c).is_dir()
                           for p in (self.image_dir / c).iterdir() if p.suffix.lower() in (".jpg", ".tif"))
        else:
            names = self._read_split(split_file)
        self.item_ids = names
        self.files, labels = [], []
        suffix = ".jpg" if bands == "rgb" else ".tif"
        for name in names:
            cls = name.split("/", 1)[0]
            if cls not in CLASSES or "/" not in name:
                where = self.split_files[0] if self.split_files else self.image_dir
                raise DatasetNotFoundError(f"{where}: entry {name!r} is not '<Class>/<file>' with one of the "
                                           f"10 EuroSAT classes")
            self.files.append(self.image_dir / Path(name).with_suffix(suffix))
            labels.append(CLASSES.index(cls))
        if not self.files:
            raise DatasetNotFoundError(f"EuroSAT split {split!r} under {self.root} lists no images")
        missing = next((f for f in (self.files[0], self.files[-1]) if not f.is_file()), None)
        if missing is not None:
            raise DatasetNotFoundError(f"EuroSAT image {missing} not found",
                                       hint=f"download and extract {self._url()} into {self.root}")
        self._targets = np.asarray(labels, dtype=np.int64)
        key = f"eurosat|{bands}|{size}|{normalise}|{self.image_dir.resolve()}|" + "|".join(
            sha256_file(p) for p in self.split_files) + f"|{len(self.files)}|{hashlib.sha256(' '.join(names).encode()).hexdigest()}"
        self.fingerprint = hashlib.sha256(key.encode()).hexdigest()

    # -- layout ---------------------------------------------------------------------------------------

    def _url(self) -> str:
        return URL_RGB if self.bands == "rgb" else URL_ALL

    def _image_dir(self) -> Path:
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"EuroSAT root {self.root} is not a folder",
                                       hint=f"download and extract {self._url()} there, or pass --root")
        sub = RGB_DIR if self.bands == "rgb" else TIF_DIR
        for cand in (self.root / sub, self.root / "EuroSAT" / sub, self.root):
            if (cand / CLASSES[0]).is_dir():
                return cand
        raise DatasetNotFoundError(f"EuroSAT class folders not found: expected {self.root / sub}/<Class>/",
                                   hint=f"download and extract {self._url()} into {self.root}")

    def _read_split(self, split_file) -> list[str]:
        path = Path(split_file) if split_file is not None else self.root / "splits" / f"{self.split}.txt"
        if split_file is None and self.split not in SPLITS:
            raise DatasetNotFoundError(f"unknown EuroSAT split {self.split!r}: expected one of {', '.join(SPLITS)} or 'all'")
        if split_file is None and self.lists == "reference":
            found = [p for p in (self.image_dir / f"{self.split}.txt", self.root / f"{self.split}.txt") if p.is_file()]
            if found:
                path = found[0]
            else:
                self.split_note = (f"EuroSAT: the reference's {self.split}.txt (SeCo's lists) is not in {self.image_dir}; "
                                   f"used {path} instead (same sizes, not the same images)")
                log.warning(self.split_note)
        if not path.is_file():
            raise DatasetNotFoundError(f"EuroSAT split file {path} not found",
                                       hint="write one '<Class>/<file>' per line, or pass split_file / --root")
        self.split_files = [path]
        names = [ln.strip().replace("\\", "/") for ln in path.read_text().splitlines() if ln.strip()]
        # the reference's lists name bare files ('AnnualCrop_1.jpg'): the class is the name before '_'
        return [n if "/" in n else f"{n.split('_', 1)[0]}/{n}" for n in names]

    # -- items ----------------------------------------------------------------------------------------

    @property
    def targets(self) -> np.ndarray:
        return self._targets

    @property
    def in_channels(self) -> int:
        return 3 if self.bands == "rgb" else len(BANDS_ALL)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        try:
            if self.bands == "rgb":
                from PIL import Image

                with Image.open(path) as im:
                    pixels = np.asarray(im.convert("RGB"))
                x = transforms.rgb8(pixels) if self.normalise == "imagenet" else transforms.unit8(pixels)
            else:
                import rasterio

                with rasterio.open(path) as src:
                    dn = src.read()
                if dn.shape[0] != len(TIF_BANDS):
                    raise DatasetFormatError(f"{path}: {dn.shape[0]} bands, expected the {len(TIF_BANDS)} of "
                                             f"EuroSATallBands")
                x = transforms.reflectance(dn[_TIF_ORDER], BANDS_ALL, self.stats)
        except FileNotFoundError:
            raise DatasetNotFoundError(f"EuroSAT image {path} not found",
                                       hint=f"download and extract {self._url()} into {self.root}") from None
        x = transforms.resize(x, self.size)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self._targets[i])


EUROSAT = register(Benchmark(
    name="eurosat", task="multiclass", num_classes=len(CLASSES), metric="top1", default_protocol="linear",
    dataset=EuroSAT, default_root="../shared/data/eurosat-rgb", size=64,
    description="EuroSAT RGB, 10 classes, 64 px; top-1 accuracy over the whole split",
))
