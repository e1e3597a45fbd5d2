"""Seasonal Contrast and MoCo-v2 models: backbone, projection heads, momentum key encoder, queues.

Follows SECO.md section 2 (the reference ``MocoV2`` module of ServiceNow/seasonal-contrast). The
model does no I/O and takes no config objects; the training loop lives in ``seco_train.train``.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.distributed as dist
import torchvision
from torch import Tensor, nn

from seco_data.errors import UsageError

from .config import BACKBONES, MODES
from .losses import info_nce, normalize

log = logging.getLogger(__name__)

SUBSPACES = {"seco": 3, "moco": 1, "moco_tp": 1}


def build_backbone(name: str = "resnet18", in_channels: int = 3) -> tuple[nn.Module, int]:
    """A torchvision ResNet from scratch with ``fc = Identity``; returns (module, feature dim).

    ``conv1`` is replaced (same shape and initialisation as torchvision's) when ``in_channels != 3``.
    """
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    if in_channels < 1:
        raise UsageError(f"in_channels must be >= 1, got {in_channels}")
    net = getattr(torchvision.models, name)(weights=None)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                              padding=old.padding, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


@torch.no_grad()
def feature_dim(encoder: nn.Module, in_channels: int) -> int:
    """The size of ``encoder``'s pooled features (one forward pass of a small image, in eval mode)."""
    was = encoder.training
    encoder.eval()
    try:
        out = encoder(torch.zeros(2, in_channels, 64, 64))
    finally:
        encoder.train(was)
    if out.dim() != 2:
        raise UsageError(f"the backbone must map (B, C, H, W) images to (B, D) features, it gives {tuple(out.shape)}")
    return int(out.shape[1])


def projection_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear(D, D) - ReLU - Linear(D, out_dim), as the reference."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))


class SeasonalContrast(nn.Module):
    """Query/key encoders with one projection head and one queue per embedding subspace.

    ``mode="seco"``: three subspaces, ``keys = [k0, k1, k2]`` (SECO.md section 2: k0 other date +
    augmentation, k1 other date, k2 same date + augmentation). ``"moco"`` / ``"moco_tp"``: one
    subspace, ``keys = [k0]`` (the temporal positive of ``moco_tp`` is chosen by the data pipeline).
    Under ``torch.distributed`` keys are gathered before enqueueing and, with ``shuffle_bn``, the key
    encoder sees a batch shuffled across ranks (MoCo's shuffle-BN); in a single process BN is plain.
    """

    def __init__(self, backbone: str | nn.Module = "resnet18", in_channels: int = 3, mode: str = "seco",
                 dim: int = 128, queue_size: int = 16384, momentum: float = 0.999, temperature: float = 0.07,
                 shuffle_bn: bool = True):
        super().__init__()
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        if queue_size < 1 or dim < 1:
            raise UsageError(f"queue_size and dim must be >= 1, got {queue_size} and {dim}")
        if not 0.0 <= momentum <= 1.0:
            raise UsageError(f"momentum must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {temperature}")
        self.backbone_name = backbone if isinstance(backbone, str) else type(backbone).__name__
        self.in_channels = in_channels
        self.mode = mode
        self.dim = dim
        self.queue_size = queue_size
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn
        self.num_subspaces = SUBSPACES[mode]

        if isinstance(backbone, nn.Module):  # any encoder of (B, C, H, W) images to (B, D) features
            self.encoder_q, self.feature_dim = backbone, feature_dim(backbone, in_channels)
        else:
            self.encoder_q, self.feature_dim = build_backbone(backbone, in_channels)
        self.heads_q = nn.ModuleList(projection_head(self.feature_dim, dim) for _ in range(self.num_subspaces))
        # key encoder and key heads: momentum copies, never updated by gradient
        self.encoder_k = copy.deepcopy(self.encoder_q)
        self.heads_k = copy.deepcopy(self.heads_q)
        for p in self._key_params():
            p.requires_grad_(False)
        for i in range(self.num_subspaces):
            self.register_buffer(f"queue_{i}", normalize(torch.randn(queue_size, dim)))
            self.register_buffer(f"queue_ptr_{i}", torch.zeros((), dtype=torch.long))

    @property
    def backbone(self) -> nn.Module:
        """The query backbone (pooled features; what downstream tasks use)."""
        return self.encoder_q

    def queue(self, i: int) -> Tensor:
        """Subspace ``i``'s queue, (K, dim), one L2-normalised key per row."""
        return self.get_buffer(f"queue_{i}")

    def queue_ptr(self, i: int) -> Tensor:
        """Subspace ``i``'s next write position (a 0-d long tensor)."""
        return self.get_buffer(f"queue_ptr_{i}")

    def _query_params(self) -> list[nn.Parameter]:
        return [*self.encoder_q.parameters(), *self.heads_q.parameters()]

    def _key_params(self) -> list[nn.Parameter]:
        return [*self.encoder_k.parameters(), *self.heads_k.parameters()]

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """key = m * key + (1 - m) * query, for the key encoder and key heads: one foreach lerp (key +
        (1 - m) * (query - key)), a single fused kernel per dtype and device on CUDA."""
        torch._foreach_lerp_(self._key_params(), self._query_params(), 1.0 - self.momentum)

    @torch.no_grad()
    def _encode_keys(self, x: Tensor) -> Tensor:
        if self.shuffle_bn and _distributed():
            x, unshuffle = _batch_shuffle(x)
            return _batch_unshuffle(self.encoder_k(x), unshuffle)
        return self.encoder_k(x)

    @torch.no_grad()
    def _enqueue(self, i: int, keys: Tensor) -> None:
        """Write ``keys`` (already gathered) at the pointer; no host synchronisation."""
        queue, ptr = self.queue(i), self.queue_ptr(i)
        rows = (ptr + torch.arange(keys.shape[0], device=ptr.device)) % self.queue_size
        queue.index_copy_(0, rows, keys.to(queue.dtype))
        ptr.copy_((ptr + keys.shape[0]) % self.queue_size)

    def _check_batch(self, q: Tensor, keys: list[Tensor]) -> None:
        if len(keys) != self.num_subspaces:
            raise UsageError(f"mode {self.mode!r} takes {self.num_subspaces} key batch(es), got {len(keys)}")
        if any(k.shape[0] != q.shape[0] for k in keys):
            raise UsageError(f"query and key batches differ in size: {q.shape[0]} vs {[k.shape[0] for k in keys]}")
        world = dist.get_world_size() if _distributed() else 1
        batch = q.shape[0] * world
        if self.queue_size % batch:
            raise UsageError(
                f"queue size {self.queue_size} is not divisible by the global batch {batch} "
                f"({q.shape[0]} x {world} rank(s))",
                hint="choose a queue size that is a multiple of the global batch, and drop the last partial batch")

    def forward(self, q: Tensor, keys: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One training step's forward: returns (summed loss, detached metrics).

        Order as the reference: momentum update, query features, key features (no grad), per subspace
        the query/key embeddings and InfoNCE, then enqueue of each subspace's positive keys.
        Metrics: ``loss``, ``loss_i`` and ``acc_i`` (contrastive top-1 as a fraction) per subspace.
        """
        keys = list(keys)
        self._check_batch(q, keys)
        self._momentum_update()
        feats_q = self.encoder_q(q)
        feats_k = [self._encode_keys(k) for k in keys]

        losses, accs, positives = [], [], []
        for i in range(self.num_subspaces):
            z_q = normalize(self.heads_q[i](feats_q))
            with torch.no_grad():
                # subspace 0 needs only its positive; 1 and 2 also take the other keys of this rank's batch
                # as negatives (2B of them, not gathered across ranks: the reference does the same)
                wanted = range(self.num_subspaces) if i > 0 else [i]
                z_k = {j: normalize(self.heads_k[i](feats_k[j])) for j in wanted}
                negatives = torch.cat([self.queue(i), *(z for j, z in z_k.items() if j != i)])
            loss, acc = info_nce(z_q, z_k[i], negatives, self.temperature)
            losses.append(loss)
            accs.append(acc)
            positives.append(z_k[i])
        total = torch.stack(losses).sum()

        for i, z in enumerate(positives):
            self._enqueue(i, _gather(z) if _distributed() else z)
        metrics = {"loss": total.detach()}
        metrics.update({f"loss_{i}": loss.detach() for i, loss in enumerate(losses)})
        metrics.update({f"acc_{i}": acc for i, acc in enumerate(accs)})
        return total, metrics


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def _gather(x: Tensor) -> Tensor:
    """Concatenation of ``x`` from every rank, in rank order (no gradient)."""
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


@torch.no_grad()
def _batch_shuffle(x: Tensor) -> tuple[Tensor, Tensor]:
    """MoCo's shuffle-BN: this rank's share of a global batch permutation broadcast from rank 0."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    every = _gather(x)
    perm = torch.randperm(every.shape[0], device=x.device)
    dist.broadcast(perm, src=0)
    mine = every[perm.view(dist.get_world_size(), -1)[dist.get_rank()]]
    if channels_last:
        mine = mine.contiguous(memory_format=torch.channels_last)
    return mine, torch.argsort(perm)


@torch.no_grad()
def _batch_unshuffle(x: Tensor, unshuffle: Tensor) -> Tensor:
    every = _gather(x)
    return every[unshuffle.view(dist.get_world_size(), -1)[dist.get_rank()]]
