"""SeCo's change-detection protocol: Siamese frozen encoder, feature differences, U-Net decoder.

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
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
    """Frozen Siamese ResNet encoder + U-Net decoder; ``forward(x1, x2)`` -> (B, 1, H, W) logits."""

    def __init__(self, encoder: nn.Module, freeze: bool = True):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            if not hasattr(encoder, name):
                raise UsageError(f"the encoder must be a torchvision ResNet (no {name!r})")
        self.encoder = encoder
        self.freeze = freeze
        if freeze:
            for p in encoder.parameters():
                p.requires_grad_(False)
            encoder.eval()
        chans = [encoder.conv1.out_channels] + [_out_channels(getattr(encoder, f"layer{i}")) for i in range(1, 5)]
        self.levels = chans
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
        if self.freeze:
            self.encoder.eval()  # BN statistics of the frozen encoder never update
        return self

    def features(self, x: Tensor) -> list[Tensor]:
        e = self.encoder
        f0 = e.relu(e.bn1(e.conv1(x)))
        f1 = e.layer1(e.maxpool(f0))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        return [f0, f1, f2, f3, e.layer4(f3)]

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        if x1.shape != x2.shape:
            raise UsageError(f"the two dates differ in shape: {tuple(x1.shape)} vs {tuple(x2.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            feats = self.features(torch.cat([x1, x2]))
            diffs = [(a - b).abs() for a, b in (f.chunk(2) for f in feats)]
        d = diffs[4]
        for block, skip in zip(self.decoder, reversed(diffs[:4])):
            d = nnf.interpolate(d, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            d = block(torch.cat([d, skip], dim=1))
        d = nnf.interpolate(d, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.final(d))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


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
                              overlay_dir: str | os.PathLike | None = None) -> dict:
    """Metrics over every pixel of ``dataset`` (eval mode: whole-image items), plus per city."""
    total, per_city = ChangeMetrics(), {}
    for k in range(len(dataset)):
        x1, x2, mask = dataset[k]
        pred = predict(model, x1, x2, device) > 0
        target = mask > 0.5
        total.update(pred, target)
        city = dataset.cities[k] if hasattr(dataset, "cities") else str(k)
        m = ChangeMetrics()
        m.update(pred, target)
        per_city[city] = m.compute()
        if overlay_dir is not None and hasattr(dataset, "display"):
            save_overlay(Path(overlay_dir) / f"{city}.png", dataset.display[k], pred.numpy(), target.numpy())
    return {**total.compute(), "per_city": per_city}


# -- the protocol -----------------------------------------------------------------------------------

def train_change_detection(model: SiameseChangeNet, train_ds, test_ds, epochs: int = 100, batch_size: int = 32,
                           seed: int = 0, device: str | torch.device = "cpu",
                           progress: ProgressFn | None = None, lr: float = 1e-3,
                           pos_weight: float | None = None, overlay_dir: str | os.PathLike | None = None,
                           num_workers: int = 0) -> dict:
    """Train the decoder on ``train_ds`` tiles (BCE, Adam ``lr``), then score every pixel of ``test_ds``.

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
    optimiser = torch.optim.Adam(params, lr=lr)
    weight = torch.tensor([pos_weight], device=device) if pos_weight is not None else None
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=generator, drop_last=False,
                        num_workers=num_workers)
    losses = []
    for epoch in range(epochs):
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
    metrics = evaluate_change_detection(model, test_ds, device, overlay_dir)
    metrics.update(train_loss=losses, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, pos_weight=pos_weight,
                   split_note=getattr(test_ds, "split_note", None))
    return metrics
