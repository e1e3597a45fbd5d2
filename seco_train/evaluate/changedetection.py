"""Change detection as SeCo evaluates it: Siamese frozen encoder, feature differences, U-Net decoder.

The encoder (any torchvision ResNet from ``build_backbone``) sees both dates; at five levels (after
conv1/bn/relu at 1/2, layer1 at 1/4, layer2 at 1/8, layer3 at 1/16, layer4 at 1/32) the absolute
difference of the two dates' features feeds a U-Net decoder (bilinear upsample, concatenate the skip,
two conv-BN-ReLU) that ends in a 1-channel change logit at input resolution. The encoder is FROZEN:
no gradients, and kept in eval mode whatever ``train()`` says, so its BatchNorm statistics never
move (one of the reference's quirks, SECO.md section 3). Loss: BCE with logits (optional
``pos_weight``); optimiser: Adam, lr 1e-3, on the decoder only.

Metrics are precision, recall and F1 of the change class from TP / FP / FN summed over every pixel of
the evaluation split (never averaged per batch or per image); evaluation runs on whole images, padded
by reflection to a multiple of 32 px and cropped back.

The reference (``models/segmentation.py`` of SeCo; the ``reference`` preset) differs, and each difference
is an option: ``level0="conv"`` takes conv1's raw output as the first level (not ``relu(bn1(conv1))``);
``decoder="reference"`` is its decoder (:class:`ReferenceDecoder`: nearest-neighbour upsampling, a 3x3
"shrink" convolution, concatenation, a 3x3 convolution, BN, ReLU and ``Dropout2d(0.3)`` per level);
``encoder_bn="train"`` leaves the encoder's BatchNorm in train mode while the decoder learns (the
reference never set it to eval: its running statistics move, its weights do not), and then runs the
encoder on each date separately, as the reference did. ``train_change_detection(..., tile=96)``
predicts evaluation images tile by tile on the reference's zero-padded grid.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from seco_data.errors import UsageError
from seco_data.outputs import atomic_file
from seco_data.jobs import Progress, ProgressFn

log = logging.getLogger(__name__)

DECODER_CHANNELS = (256, 128, 64, 64, 32)  # after levels 3, 2, 1, 0, and at full resolution


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SiameseChangeNet(nn.Module):
    """Frozen Siamese ResNet encoder + U-Net decoder; ``forward(x1, x2)`` -> (B, 1, H, W) logits.

    ``level0``: "relu" (``relu(bn1(conv1))``) or "conv" (conv1's raw output, the reference);
    ``decoder``: "unet" (bilinear, two conv-BN-ReLU per level) or "reference" (:class:`ReferenceDecoder`);
    ``encoder_bn``: "eval" (frozen statistics) or "train" (the reference: statistics move while training).
    """

    def __init__(self, encoder: nn.Module, freeze: bool = True, *, level0: str = "relu", decoder: str = "unet",
                 encoder_bn: str = "eval", dropout: float = 0.3):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            if not hasattr(encoder, name):
                raise UsageError(f"the encoder must be a torchvision ResNet (no {name!r})")
        if level0 not in ("relu", "conv") or decoder not in ("unet", "reference") or encoder_bn not in ("eval", "train"):
            raise UsageError(f"level0 must be relu|conv, decoder unet|reference, encoder_bn eval|train; got "
                             f"{level0!r}, {decoder!r}, {encoder_bn!r}")
        self.encoder = encoder
        self.freeze = freeze
        self.level0, self.decoder_kind, self.encoder_bn = level0, decoder, encoder_bn
        if freeze:
            for p in encoder.parameters():
                p.requires_grad_(False)
            encoder.eval()
        chans = [encoder.conv1.out_channels] + [_out_channels(getattr(encoder, f"layer{i}")) for i in range(1, 5)]
        self.levels = chans
        if decoder == "reference":
            self.decoder = ReferenceDecoder(chans, dropout)
            return
        dec = []
        cin = chans[4]
        for skip, cout in zip(reversed(chans[:4]), DECODER_CHANNELS[:4]):
            dec.append(_block(cin + skip, cout))
            cin = cout
        self.decoder = nn.ModuleList(dec)
        self.final = _block(cin, DECODER_CHANNELS[4])
        self.head = nn.Conv2d(DECODER_CHANNELS[4], 1, 1)

    def train(self, mode: bool = True) -> SiameseChangeNet:
        super().train(mode)
        if self.freeze and self.encoder_bn == "eval":
            self.encoder.eval()  # BN statistics of the frozen encoder never update
        return self

    def features(self, x: Tensor) -> list[Tensor]:
        e = self.encoder
        c0 = e.conv1(x)
        r0 = e.relu(e.bn1(c0))
        f1 = e.layer1(e.maxpool(r0))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        return [c0 if self.level0 == "conv" else r0, f1, f2, f3, e.layer4(f3)]

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        if x1.shape != x2.shape:
            raise UsageError(f"the two dates differ in shape: {tuple(x1.shape)} vs {tuple(x2.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            if self.encoder_bn == "train" and self.encoder.training:  # batch statistics per date, as the reference
                diffs = [(a - b).abs() for a, b in zip(self.features(x1), self.features(x2))]
            else:
                diffs = [(a - b).abs() for a, b in (f.chunk(2) for f in self.features(torch.cat([x1, x2])))]
        if self.decoder_kind == "reference":
            return self.decoder(diffs)
        d = diffs[4]
        for block, skip in zip(self.decoder, reversed(diffs[:4])):
            d = nnf.interpolate(d, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            d = block(torch.cat([d, skip], dim=1))
        d = nnf.interpolate(d, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.final(d))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class ReferenceDecoder(nn.Module):
    """SeCo's change-detection decoder (``UNet(concat_mult=1, dropout_rate=0.3)`` of its ``segmentation.py``).

    From the deepest level down, for each level i = 3 .. 0 with channels ``c[i]``: nearest-neighbour
    upsampling x2, ``shrink_i`` 3x3 conv ``c[i+1] -> c[i]`` (with bias), concatenation with the level's
    feature (itself upsampled x2 when its size differs), ``shrink2_i`` 3x3 conv ``2 c[i] -> c[i]`` (no bias),
    BatchNorm, ReLU, ``Dropout2d``; then nearest upsampling x2 and a 1x1 conv to one logit. Inputs must be
    multiples of 32 px (the reference used 96 px tiles)."""

    def __init__(self, chans: list[int], dropout: float = 0.3):
        super().__init__()
        self.shrink = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i], 3, padding=1) for i in range(4))
        self.shrink2 = nn.ModuleList(nn.Conv2d(2 * chans[i], chans[i], 3, padding=1, bias=False) for i in range(4))
        self.bn = nn.ModuleList(nn.BatchNorm2d(chans[i]) for i in range(4))
        self.dropout = nn.Dropout2d(dropout)
        self.out = nn.Conv2d(chans[0], 1, 1)

    def forward(self, diffs: list[Tensor]) -> Tensor:
        x = diffs[4]
        for i in range(3, -1, -1):
            x = self.shrink[i](nnf.interpolate(x, scale_factor=2, mode="nearest"))
            skip = diffs[i]
            if skip.shape[-1] != x.shape[-1]:
                skip = nnf.interpolate(skip, scale_factor=2, mode="nearest")
            x = self.dropout(nnf.relu(self.bn[i](self.shrink2[i](torch.cat([x, skip], 1)))))
        return self.out(nnf.interpolate(x, scale_factor=2, mode="nearest"))


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


# -- metrics ----------------------------------------------------------------------------------------

class ChangeMetrics:
    """TP / FP / FN / TN of the change class summed over every pixel seen; :meth:`compute` gives
    precision, recall and F1 (0 where undefined, like scikit-learn's ``zero_division=0``)."""

    def __init__(self):
        self.tp = self.fp = self.fn = self.tn = 0

    def update(self, pred, target) -> None:
        pred = torch.as_tensor(pred).bool()
        target = torch.as_tensor(target).bool()
        if pred.shape != target.shape:
            raise UsageError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        self.tp += int((pred & target).sum())
        self.fp += int((pred & ~target).sum())
        self.fn += int((~pred & target).sum())
        self.tn += int((~pred & ~target).sum())

    def compute(self) -> dict:
        tp, fp, fn = self.tp, self.fp, self.fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": self.tn}


# -- inference and overlays -------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, x1: Tensor, x2: Tensor, device: str | torch.device = "cpu",
            multiple: int = 32) -> Tensor:
    """(H, W) change logits of one whole (C, H, W) image pair: reflect-padded to a multiple of
    ``multiple`` px, one forward pass, cropped back."""
    model.eval()
    h, w = x1.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pair = torch.stack([x1, x2]).to(device)
    if ph or pw:
        pair = nnf.pad(pair, (0, pw, 0, ph), mode="reflect")
    return model(pair[:1], pair[1:])[0, 0, :h, :w].float().cpu()


@torch.no_grad()
def predict_tiled(model: nn.Module, x1: Tensor, x2: Tensor, tile: int, device: str | torch.device = "cpu",
                  batch_size: int = 32) -> Tensor:
    """(H, W) change logits of one whole image pair predicted tile by tile on a ``tile`` px grid from the
    top-left corner, tiles past the right and bottom edges zero-padded (the reference's inputs)."""
    model.eval()
    h, w = x1.shape[-2:]
    ph, pw = (-h) % tile, (-w) % tile
    a, b = nnf.pad(x1, (0, pw, 0, ph)), nnf.pad(x2, (0, pw, 0, ph))
    cells = [(i, j) for i in range(0, h + ph, tile) for j in range(0, w + pw, tile)]
    out = torch.empty((h + ph, w + pw))
    for s in range(0, len(cells), batch_size):
        part = cells[s:s + batch_size]
        t1 = torch.stack([a[:, i:i + tile, j:j + tile] for i, j in part]).to(device)
        t2 = torch.stack([b[:, i:i + tile, j:j + tile] for i, j in part]).to(device)
        logits = model(t1, t2)[:, 0].float().cpu()
        for (i, j), z in zip(part, logits):
            out[i:i + tile, j:j + tile] = z
    return out[:h, :w]


def tile_counts(pred: Tensor, target: Tensor, tile: int = 96) -> np.ndarray:
    """(tiles, 4) int64 TP, FP, FN, TN of each cell of a ``tile`` px grid over one image (edge cells
    partial): the resampling units of the change-detection bootstrap."""
    pred, target = torch.as_tensor(pred).bool(), torch.as_tensor(target).bool()
    h, w = target.shape
    rows = []
    for i in range(0, h, tile):
        for j in range(0, w, tile):
            p, t = pred[i:i + tile, j:j + tile], target[i:i + tile, j:j + tile]
            rows.append((int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()), int((~p & ~t).sum())))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def save_overlay(path: str | os.PathLike, rgb: np.ndarray, pred, target) -> Path:
    """PNG of the (H, W, 3) uint8 image with predicted change in red and missed change (false
    negatives) in cyan; written atomically."""
    from PIL import Image

    pred = np.asarray(pred, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if rgb.shape[:2] != pred.shape or pred.shape != target.shape:
        raise UsageError(f"image {rgb.shape[:2]}, prediction {pred.shape} and target {target.shape} differ in size")
    out = rgb.copy()
    out[pred] = (255, 0, 0)
    out[~pred & target] = (0, 255, 255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        Image.fromarray(out).save(f, format="PNG")
    return path


def evaluate_change_detection(model: nn.Module, dataset, device: str | torch.device = "cpu",
                              overlay_dir: str | os.PathLike | None = None, tile: int | None = None,
                              count_tile: int = 96) -> dict:
    """Metrics over every pixel of ``dataset`` (eval mode: whole-image items), plus per city, plus the
    per-cell counts of a ``count_tile`` px grid (``tiles``: ids and (n, 4) TP/FP/FN/TN, for the bootstrap).
    ``tile``: predict tile by tile on the reference's zero-padded grid instead of whole images."""
    total, per_city = ChangeMetrics(), {}
    ids, counts = [], []
    for k in range(len(dataset)):
        x1, x2, mask = dataset[k]
        pred = (predict_tiled(model, x1, x2, tile, device) if tile else predict(model, x1, x2, device)) > 0
        target = mask > 0.5
        total.update(pred, target)
        city = dataset.cities[k] if hasattr(dataset, "cities") else str(k)
        m = ChangeMetrics()
        m.update(pred, target)
        per_city[city] = m.compute()
        c = tile_counts(pred, target, count_tile)
        counts.append(c)
        ids += [f"{city}:{n}" for n in range(len(c))]
        if overlay_dir is not None and hasattr(dataset, "display"):
            save_overlay(Path(overlay_dir) / f"{city}.png", dataset.display[k], pred.numpy(), target.numpy())
    tiles = {"ids": ids, "counts": np.concatenate(counts) if counts else np.zeros((0, 4), np.int64), "px": count_tile}
    return {**total.compute(), "per_city": per_city, "tiles": tiles}


# -- the protocol -----------------------------------------------------------------------------------

def train_change_detection(model: SiameseChangeNet, train_ds, test_ds, epochs: int = 100, batch_size: int = 32,
                           seed: int = 0, device: str | torch.device = "cpu",
                           progress: ProgressFn | None = None, lr: float = 1e-3,
                           pos_weight: float | None = None, overlay_dir: str | os.PathLike | None = None,
                           num_workers: int = 0, weight_decay: float = 0.0,
                           lr_factor: Callable[[int], float] | None = None, drop_last: bool = False,
                           tile: int | None = None) -> dict:
    """Train the decoder on ``train_ds`` tiles (BCE, Adam ``lr``), then score every pixel of ``test_ds``.

    ``weight_decay``: Adam's (L2) weight decay; ``lr_factor(epoch)``: the lr multiplier of each epoch
    (default constant); ``drop_last``: drop the last partial batch; ``tile``: predict the test images on a
    zero-padded ``tile`` px grid (the reference) instead of whole.

    ``seed`` drives the shuffling (and, through ``set_epoch``, OSCD's tiles); the decoder's
    initialisation is the caller's (seed torch before building the model).

    Returns the test metrics (``precision``, ``recall``, ``f1``, counts, ``per_city``), the mean
    training loss of each epoch (``train_loss``), the settings and ``split_note``. ``progress`` is
    called after every step (stage ``train``, steps of the epoch, its number and the loss).
    """
    if epochs < 1 or batch_size < 1:
        raise UsageError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    model.to(device)
    params = model.trainable_parameters() if hasattr(model, "trainable_parameters") else \
        [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    weight = torch.tensor([pos_weight], device=device) if pos_weight is not None else None
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=generator,
                        drop_last=drop_last and len(train_ds) > batch_size, num_workers=num_workers)
    losses = []
    for epoch in range(epochs):
        for g in optimiser.param_groups:
            g["lr"] = lr * (lr_factor(epoch) if lr_factor is not None else 1.0)
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for step, (x1, x2, mask) in enumerate(loader):
            x1, x2, mask = x1.to(device), x2.to(device), mask.to(device)
            logits = model(x1, x2)[:, 0]
            loss = nnf.binary_cross_entropy_with_logits(logits, mask, pos_weight=weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            value = float(loss.detach())
            total += value * x1.shape[0]
            count += x1.shape[0]
            if progress is not None:
                progress(Progress(step + 1, len(loader), "step", stage="train", info={"epoch": epoch + 1, "loss": value}))
        losses.append(total / count)
        log.info("change detection epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
    metrics = evaluate_change_detection(model, test_ds, device, overlay_dir, tile=tile)
    metrics.update(train_loss=losses, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, pos_weight=pos_weight,
                   weight_decay=weight_decay, split_note=getattr(test_ds, "split_note", None))
    return metrics
