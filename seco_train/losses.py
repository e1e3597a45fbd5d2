"""InfoNCE, the contrastive loss of MoCo and Seasonal Contrast (SECO.md section 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize(z: Tensor) -> Tensor:
    """L2-normalise rows in float32, whatever autocast is active."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        return F.normalize(z.float(), dim=1)


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Mean InfoNCE loss and contrastive top-1 accuracy (a fraction in [0, 1], detached).

    ``query`` and ``positive`` are (B, D), ``negatives`` (N, D) shared by every query, all L2-normalised.
    Logits are [q.k+, q.n_1 .. q.n_N] / temperature with the positive first; computed in float32.
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        q, pos, neg = query.float(), positive.float(), negatives.float()
        l_pos = (q * pos).sum(dim=1, keepdim=True)
        l_neg = q @ neg.T
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(dim=1) == 0).float().mean()
    return loss, acc.detach()
