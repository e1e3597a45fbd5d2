"""Onera Satellite Change Detection (OSCD) for the change-detection benchmark: reader, split, tiles.

Layout (the official archive): ``ROOT/Onera Satellite Change Detection dataset - Images/<city>/
imgs_{1,2}/*_<band>.tif`` (single-band uint16 L1C GeoTIFFs, DN = TOA reflectance x 10000) and
``ROOT/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/`` holding ``<city>-cm.tif``
and / or ``cm.png``. Change maps come in three codings: 0/1 (the dataset README), 0/255 (``cm.png``)
and 1/2 (the ``-cm.tif`` files as distributed: 1 = no change, 2 = change); :func:`read_change_map`
detects which from the values present and refuses anything else.

Only the 14 cities of the official ``train.txt`` have public labels, so the official 14 / 10 protocol
cannot be run; :data:`TEST_CITIES` is a fixed leave-cities-out split of those 14 (see
:data:`SPLIT_NOTE`, which every report of OSCD numbers must quote).

For abudhabi, hongkong and saclay_e the second image is a few pixels smaller than the first (the
labels follow the first): both dates and the label are cropped to the common size, keeping the
top-left corner (row 0, column 0 of every raster is the same corner of the scene).

Inputs are normalised as in pre-training: RGB (B04, B03, B02) through the SeCo stretch and ImageNet
mean/std; other band sets by ``(DN * 1e-4 - mean) / std`` with pre-training's statistics (``stats``),
bands coarser than 10 m bilinearly resampled to the 10 m grid. Training items are random 96 px tiles
(SeCo's tile size; SeCo itself used a fixed grid: ``tiles="grid"``) with random flips; evaluation items
are whole cities, so metrics cover every pixel.

The ``reference`` preset reproduces SeCo's ``oscd_dataset.py`` instead: ``normalise="reference"`` maps
each RGB band's DN to uint8 with the reference's fixed OSCD quantiles (:data:`REFERENCE_QUANTILES`,
``clip((DN - q2) / (q98 - q2), 0, 1) * 255`` truncated) and then ``x / 255``; ``tiles="grid"`` trains on
the fixed grid of 96 px tiles of every city (tiles past the right and bottom edges zero-padded, as PIL's
``crop`` pads), each with a horizontal flip (p = 0.5) and a rotation by 0, 90, 180 or 270 degrees.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset

from seco_data.bands import DN_SCALE
from seco_data.errors import UsageError

from ..views import IMAGENET
from .bigearthnet import seco_rgb_lut
from .errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger(__name__)

IMAGES_DIR = "Onera Satellite Change Detection dataset - Images"
LABELS_DIR = "Onera Satellite Change Detection dataset - Train Labels"
RGB_BANDS = ("B04", "B03", "B02")
TILE = 96
#: "pretraining": as the backbone was pre-trained; "reference": the reference's OSCD quantile stretch
NORMALISE = ("pretraining", "reference")
#: "random": jittered crops with flips; "grid": the reference's fixed tile grid with hflip + rot90
TILES = ("random", "grid")
#: the reference's 2 % / 98 % DN quantiles of the OSCD RGB bands (``datasets/oscd_dataset.py``)
REFERENCE_QUANTILES = {"B02": (885.0, 2620.0), "B03": (667.0, 2969.0), "B04": (426.0, 3698.0)}

#: The 14 cities with public change maps (the official train.txt).
LABELLED_CITIES = ("abudhabi", "aguasclaras", "beihai", "beirut", "bercy", "bordeaux", "cupertino", "hongkong",
                   "mumbai", "nantes", "paris", "pisa", "rennes", "saclay_e")
#: Held-out cities. Of all 1001 ways to hold out 4 of the 14, this one comes closest to 4/14 of the change
#: pixels with the overall change rate: 28.5 % of the change pixels, 28.8 % of all pixels, 2.27 % change vs
#: 2.29 % over the 14; it spans three continents (Europe: bercy, pisa; North America: cupertino; Asia:
#: hongkong) and keeps one of the two 13-band cities (paris) for training and one (bercy) for testing.
TEST_CITIES = ("bercy", "cupertino", "hongkong", "pisa")
TRAIN_CITIES = tuple(c for c in LABELLED_CITIES if c not in TEST_CITIES)
SPLITS = {"train": TRAIN_CITIES, "test": TEST_CITIES}
SPLIT_NOTE = (
    "OSCD: the official test labels are not public, so scores are on a fixed leave-cities-out split of the "
    f"14 labelled cities: train on {', '.join(TRAIN_CITIES)}; test on {', '.join(TEST_CITIES)} "
    "(all pixels of the test cities; not comparable with scores on the official 10 test cities)."
)


def read_change_map(path: str | os.PathLike) -> np.ndarray:
    """(H, W) bool change map of a ``-cm.tif`` or ``cm.png`` (first channel), coded 0/1, 0/255 or 1/2."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"OSCD change map not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the label TIFs carry no transform
            with rasterio.open(path) as src:
                raw = src.read(1)
    else:
        from PIL import Image

        with Image.open(path) as im:
            raw = np.asarray(im)
        if raw.ndim == 3:
            raw = raw[..., 0]
    values = set(np.unique(raw).tolist())
    if values <= {0, 1} and 0 in values:
        return raw == 1
    if values <= {0, 255}:
        return raw == 255
    if values <= {1, 2} and 2 in values:
        return raw == 2
    shown = sorted(values)[:8]
    raise DatasetFormatError(
        f"{path}: change-map values {shown}{'...' if len(values) > 8 else ''} are not a 0/1, 0/255 or 1/2 coding"
        + (" (all 1: ambiguous between 0/1 and 1/2)" if values == {1} else ""))


def change_map_path(root: Path, city: str) -> Path:
    """The city's ``<city>-cm.tif``, else its ``cm.png``."""
    folder = root / LABELS_DIR / city / "cm"
    for p in (folder / f"{city}-cm.tif", folder / "cm.png"):
        if p.is_file():
            return p
    raise DatasetNotFoundError(f"no change map for OSCD city {city!r} in {folder} (looked for {city}-cm.tif, cm.png)")


def _band_file(folder: Path, band: str) -> Path:
    found = sorted(folder.glob(f"*_{band}.tif"))
    if len(found) != 1:
        raise DatasetNotFoundError(f"expected one *_{band}.tif in {folder}, found {len(found)}",
                                   hint="this copy may hold only B02 B03 B04 B08 for most cities; choose bands it has")
    return found[0]


def read_date(root: Path, city: str, date: int, bands: Sequence[str]) -> np.ndarray:
    """(C, H, W) uint16 DN of one date on the 10 m grid (coarser bands resampled bilinearly, rounded)."""
    import rasterio

    folder = root / IMAGES_DIR / city / f"imgs_{date}"
    if not folder.is_dir():
        raise DatasetNotFoundError(f"OSCD images not found: {folder}",
                                   hint=f"pass the folder that holds '{IMAGES_DIR}'")
    with rasterio.open(_band_file(folder, "B02")) as src:
        shape = src.shape
    out = np.empty((len(bands), *shape), dtype=np.uint16)
    for c, band in enumerate(bands):
        with rasterio.open(_band_file(folder, band)) as src:
            dn = src.read(1)
        if dn.shape != shape:
            t = nnf.interpolate(torch.from_numpy(dn.astype(np.float32))[None, None], size=shape, mode="bilinear",
                                align_corners=False)[0, 0]
            dn = t.round().clamp(0, 65535).numpy().astype(np.uint16)
        out[c] = dn
    return out


def reference_normalise(dn: np.ndarray, bands: Sequence[str]) -> torch.Tensor:
    """(C, H, W) float32 of uint16 DN as the reference reads OSCD: uint8 by the fixed quantiles, then / 255."""
    missing = [b for b in bands if b not in REFERENCE_QUANTILES]
    if missing:
        raise UsageError(f"the reference OSCD normalisation knows B02, B03 and B04 only, not {', '.join(missing)}")
    out = []
    for c, band in enumerate(bands):
        lo, hi = REFERENCE_QUANTILES[band]
        v = np.clip((dn[c].astype(np.float64) - lo) / (hi - lo), 0, 1)
        out.append((v * 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out)).float().div_(255.0)


def normalise(dn: np.ndarray, bands: Sequence[str], stats: dict | None = None,
              mode: str = "pretraining") -> torch.Tensor:
    """(C, H, W) float32 network input of uint16 DN, as pre-training (see the module docstring), or as the
    reference read it (``mode="reference"``)."""
    if mode == "reference":
        return reference_normalise(dn, bands)
    if tuple(bands) == RGB_BANDS and stats is None:
        return torch.stack([seco_rgb_lut(b)[torch.from_numpy(dn[c].astype(np.int64))] for c, b in enumerate(bands)])
    if stats is None:
        raise UsageError(f"bands {', '.join(bands)} need stats (band -> mean/std of reflectance) to be normalised",
                         hint="pass the statistics JSON the backbone was pre-trained with (`seco-train stats`)")
    mean = torch.tensor([float(stats[b]["mean"]) for b in bands]).view(-1, 1, 1)
    std = torch.tensor([float(stats[b]["std"]) for b in bands]).view(-1, 1, 1)
    return (torch.from_numpy(dn.astype(np.float32)) * DN_SCALE - mean) / std


_normalise_dn = normalise  # OSCD's ``normalise`` option shadows the function inside its __init__


def display_rgb(dn: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 SeCo-stretched RGB of (3, H, W) B04, B03, B02 DN (for overlays)."""
    x = normalise(dn, RGB_BANDS)
    mean = torch.tensor([IMAGENET[b][0] for b in RGB_BANDS]).view(3, 1, 1)
    std = torch.tensor([IMAGENET[b][1] for b in RGB_BANDS]).view(3, 1, 1)
    return (x * std + mean).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def load_city(root: str | os.PathLike, city: str, bands: Sequence[str] = RGB_BANDS) -> dict:
    """Both dates (uint16 DN), the bool change map and the crop applied, all on the common size."""
    root = Path(root)
    one, two = read_date(root, city, 1, bands), read_date(root, city, 2, bands)
    change = read_change_map(change_map_path(root, city))
    if change.shape != one.shape[1:]:
        raise DatasetFormatError(f"OSCD {city}: change map {change.shape} does not match image 1 {one.shape[1:]}")
    h, w = min(one.shape[1], two.shape[1]), min(one.shape[2], two.shape[2])
    cropped = (one.shape[1:], two.shape[1:]) if (one.shape[1:], two.shape[1:]) != ((h, w), (h, w)) else None
    if cropped:
        log.info("OSCD %s: dates of %s and %s px cropped to the common %dx%d", city, *cropped, h, w)
    return {"city": city, "img1": one[:, :h, :w], "img2": two[:, :h, :w], "change": change[:h, :w],
            "cropped_from": cropped}


class OSCD(Dataset):
    """OSCD cities of one split, normalised and held in memory.

    ``mode="train"``: items ``(x1, x2, mask)`` of random ``tile`` px crops with random horizontal and
    vertical flips (float32 (C, t, t), (C, t, t), (t, t) with 1 = change); an epoch has one item per
    cell of a ``tile`` grid over every city, each crop drawn uniformly inside the cell's city at a
    position near the cell, from ``(seed, epoch, index)`` (call :meth:`set_epoch`).
    ``mode="eval"``: one item per city, ``(x1, x2, mask)`` at full size, in city order.
    ``cities`` overrides the split's cities (e.g. one small city for a quick run).
    ``normalise`` and ``tiles``: see the module docstring (``"reference"`` / ``"grid"``: the reference's).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", mode: str | None = None,
                 bands: Sequence[str] = RGB_BANDS, stats: dict | None = None, tile: int = TILE,
                 cities: Sequence[str] | None = None, seed: int = 0, normalise: str = "pretraining",
                 tiles: str = "random"):
        self.root = Path(root)
        if normalise not in NORMALISE or tiles not in TILES:
            raise UsageError(f"OSCD normalise must be one of {', '.join(NORMALISE)} and tiles one of "
                             f"{', '.join(TILES)}, not {normalise!r} / {tiles!r}")
        self.normalisation, self.tiling = normalise, tiles
        if split not in SPLITS:
            raise UsageError(f"unknown OSCD split {split!r}: expected one of {', '.join(SPLITS)}")
        mode = mode or ("train" if split == "train" else "eval")
        if mode not in ("train", "eval"):
            raise UsageError(f"OSCD mode must be 'train' or 'eval', not {mode!r}")
        if tile < 32:
            raise UsageError(f"tile must be at least 32 px, got {tile}")
        if not (self.root / IMAGES_DIR).is_dir():
            raise DatasetNotFoundError(f"'{IMAGES_DIR}' not found in {self.root}",
                                       hint="pass the folder that holds the extracted OSCD archives")
        cities = tuple(cities) if cities is not None else SPLITS[split]
        unknown = [c for c in cities if c not in LABELLED_CITIES]
        if unknown or not cities:
            raise UsageError(f"OSCD cities must be among the 14 labelled ones, got {unknown or 'none'}")
        self.split, self.mode, self.bands, self.tile, self.seed = split, mode, tuple(bands), tile, seed
        self.cities, self.epoch = cities, 0
        self.split_note = SPLIT_NOTE if cities == SPLITS[split] else (
            SPLIT_NOTE + f" This run used only {', '.join(cities)} for {split}.")
        self.images1, self.images2, self.masks, self.display = [], [], [], []
        normalise_mode = normalise
        for city in cities:
            c = load_city(self.root, city, self.bands)
            h, w = c["change"].shape
            if h < tile or w < tile:
                raise DatasetFormatError(f"OSCD {city} ({h}x{w}) is smaller than the {tile} px tile")
            self.images1.append(_normalise_dn(c["img1"], self.bands, stats, normalise_mode))
            self.images2.append(_normalise_dn(c["img2"], self.bands, stats, normalise_mode))
            self.masks.append(torch.from_numpy(c["change"].astype(np.float32)))
            rgb = (c["img2"][[self.bands.index(b) for b in RGB_BANDS]] if set(RGB_BANDS) <= set(self.bands)
                   else read_date(self.root, city, 2, RGB_BANDS)[:, :h, :w])
            self.display.append(display_rgb(rgb))  # date 2 as (H, W, 3) uint8, for overlays
        if tiles == "grid":  # the reference's order: product(range(0, width, t), range(0, height, t))
            self._cells = [(k, i, j) for k, m in enumerate(self.masks)
                           for j in range(-(-m.shape[1] // tile)) for i in range(-(-m.shape[0] // tile))]
        else:
            self._cells = [(k, i, j) for k, m in enumerate(self.masks)
                           for i in range(-(-m.shape[0] // tile)) for j in range(-(-m.shape[1] // tile))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._cells) if self.mode == "train" else len(self.cities)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.mode == "eval":
            return self.images1[index], self.images2[index], self.masks[index]
        k, ci, cj = self._cells[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        t = self.tile
        if self.tiling == "grid":
            return self._grid_tile(k, ci, cj, rng)
        h, w = self.masks[k].shape
        # a uniformly jittered crop around grid cell (ci, cj), clipped into the image
        i = int(np.clip(ci * t + rng.integers(-t // 2, t // 2 + 1), 0, h - t))
        j = int(np.clip(cj * t + rng.integers(-t // 2, t // 2 + 1), 0, w - t))
        x1 = self.images1[k][:, i:i + t, j:j + t]
        x2 = self.images2[k][:, i:i + t, j:j + t]
        m = self.masks[k][i:i + t, j:j + t]
        flips = rng.random(2) < 0.5
        dims = [d for d, f in zip((-1, -2), flips) if f]
        if dims:
            x1, x2, m = x1.flip(dims), x2.flip(dims), m.flip(dims)
        return x1.contiguous(), x2.contiguous(), m.contiguous()


    def _grid_tile(self, k: int, ci: int, cj: int, rng: np.random.Generator):
        """The reference's training item: grid tile (ci, cj) of city k, zero-padded past the edges, flipped
        horizontally with p = 0.5, then rotated counter-clockwise by 0, 90, 180 or 270 degrees."""
        x1, x2, m = grid_tile(self.images1[k], self.images2[k], self.masks[k], ci, cj, self.tile)
        if rng.random() > 0.5:
            x1, x2, m = x1.flip(-1), x2.flip(-1), m.flip(-1)
        turns = int(rng.integers(4))
        if turns:
            x1, x2, m = (torch.rot90(v, turns, dims=(-2, -1)) for v in (x1, x2, m))
        return x1.contiguous(), x2.contiguous(), m.contiguous()


def grid_tile(x1: torch.Tensor, x2: torch.Tensor, mask: torch.Tensor, ci: int, cj: int, tile: int):
    """Tile (ci, cj) of a t-pixel grid over (C, H, W) images and their (H, W) mask; zeros past the edges."""
    h, w = mask.shape
    i, j = ci * tile, cj * tile
    out1 = x1.new_zeros((x1.shape[0], tile, tile))
    out2 = x2.new_zeros((x2.shape[0], tile, tile))
    om = mask.new_zeros((tile, tile))
    hh, ww = min(tile, h - i), min(tile, w - j)
    out1[:, :hh, :ww] = x1[:, i:i + hh, j:j + ww]
    out2[:, :hh, :ww] = x2[:, i:i + hh, j:j + ww]
    om[:hh, :ww] = mask[i:i + hh, j:j + ww]
    return out1, out2, om


class OSCDBenchmark(OSCD):
    """:class:`OSCD` with the interface the evaluator asks of a benchmark dataset: a split file, if
    given, lists cities (one per line) instead of the fixed leave-cities-out split."""

    def __init__(self, root, split: str = "train", split_file=None, size: int | None = TILE, **options):
        cities = None
        if split_file is not None:
            try:
                cities = [c.strip() for c in Path(split_file).read_text("utf-8").replace(",", "\n").split() if c.strip()]
            except OSError as e:
                raise DatasetNotFoundError(f"cannot read the OSCD city list {split_file}: {e.strerror}") from None
        super().__init__(root, split, cities=cities, tile=size or TILE, **options)
        self.split_files = [Path(split_file)] if split_file is not None else []
        self.fingerprint = (f"oscd:{','.join(self.cities)}:{self.tile}:{','.join(self.bands)}:{self.normalisation}:"
                            f"{self.tiling}")
        self.targets = np.zeros(len(self), dtype=np.int64)  # whole-image targets are masks, not classes

    @property
    def in_channels(self) -> int:
        return len(self.bands)


def _run(bench, backbone, config, *, evals, train, progress=None, options=None) -> dict:
    """SeCo's change-detection protocol (frozen Siamese encoder + decoder, BCE, Adam) on the fixed split;
    metrics over every pixel of the test cities. ``options`` (the preset's ``model``): ``level0``
    ("relu" | "conv"), ``decoder`` ("unet" | "reference"). ``config.backbone_mode="train"`` leaves the
    encoder's BatchNorm in train mode while the decoder learns, as the reference did."""
    from .changedetection import SiameseChangeNet, train_change_detection
    from .protocols import _lr_factor

    options = dict(options or {})
    torch.manual_seed(config.seed)
    model = SiameseChangeNet(backbone, freeze=True, level0=options.get("level0", "relu"),
                             decoder=options.get("decoder", "unet"), encoder_bn=config.backbone_mode or "eval")
    test = evals["test"]
    grid = getattr(test, "tiling", "random") == "grid"
    out = train_change_detection(model, train, test, epochs=config.epochs, batch_size=config.batch_size,
                                 seed=config.seed, device=config.device, lr=config.lr,
                                 num_workers=config.num_workers, weight_decay=config.weight_decay,
                                 lr_factor=lambda epoch: _lr_factor(config, epoch, 1),
                                 drop_last=bool(config.drop_last), tile=test.tile if grid else None,
                                 progress=progress)
    keys = ("precision", "recall", "f1", "tp", "fp", "fn", "tn", "per_city", "split_note", "tiles")
    return {"test": {k: out[k] for k in keys if k in out}}


def _register() -> None:
    from .registry import BENCHMARKS, Benchmark, register

    if "oscd" not in BENCHMARKS:
        register(Benchmark(
            name="oscd", task="change", num_classes=2, metric="f1", default_protocol="linear",
            dataset=OSCDBenchmark, default_root="../shared/data/oscd", size=TILE, splits=("train", "test"),
            protocols=("linear",), run=_run,
            description="OSCD change detection (RGB or all bands), SeCo's frozen Siamese encoder + U-Net decoder "
                        "(protocol 'linear': the encoder stays frozen), 96 px tiles; F1 of the change class over "
                        "all pixels. " + SPLIT_NOTE,
        ))


_register()
