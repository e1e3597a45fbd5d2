"""Views of a whole batch on the training device: what :func:`seco_train.views.make_views` does one
sample at a time, batched (SECO.md section 2; issue 14).

Loader workers ship each sample compactly (:func:`pack_sample`): the seasons its views come from, at
their stored resolution, as uint8 after the seco stretch (the stored DN for ``stats``), and one row of
random parameters per view (:class:`~seco_train.views.ViewParams`), drawn from the same generator
stream as the per-sample path (:func:`~seco_train.views.draw_plan`): both paths make the same random
choices and a run resumes exactly. For SeCo's four 224 px RGB views that is 627 KB of uint8 per sample
instead of 2.4 MB of float32 views. :class:`BatchViews` turns a collated batch into the views:

1. images: ``k / 255`` (seco) or ``DN * scale`` (stats) in float32, coarser bands upsampled bilinearly
   to the finest grid: the per-sample conversion, batched;
2. seco: the augmentation of k0 and k2 on the full images, then the resized crop of every view; MoCo
   modes: the crops, then the augmentation of both views;
3. normalisation; channels-last on request.

Each operation runs once over the views that take it. The host reads the parameters (CPU tensors) and
plans index lists and factors (:class:`BatchPlan`), so the device never waits for the host: the colour
jitter runs position by position (each view keeps its own order of the four adjustments), then
grayscale, the blur (each view's sigma: one depthwise convolution per direction, every kernel
zero-padded to the batch's largest radius; the reflect padding of a larger radius holds the same pixels)
and the flip. The resized crop is two matrix products per view with torchvision's antialiased bilinear
weights (:func:`crop_weights`); on CPU tensors it calls torchvision's resized_crop view by view instead
(the dense products cost more there). On CUDA the blur and the products run in full fp32 (no TF32).

Agreement with the per-sample path, op by op and end to end: tests/test_batched.py.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as F

from seco_data.errors import ShardError

from .views import (AUGMENTED, COL, CROP_FIRST, SOURCES, SeasonImages, ViewConfig, blur_kernel, blur_radius,
                    draw_plan, rotate_hue, upper_clamp)

#: rows of the resized crop's matrix products at a time (bounds the weights' memory)
CROP_CHUNK = 256
#: every resized crop on these devices runs as matrix products (elsewhere: torchvision, view by view)
MATMUL_DEVICES = ("cuda",)


# -- the loader's side ------------------------------------------------------------------------------

def pack_sample(images: SeasonImages, cfg: ViewConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One sample as a loader worker ships it: ``params`` (views, fields) float64 (one
    :meth:`~seco_train.views.ViewParams.row` per view), ``x0``, ``x1``... the drawn seasons per group of
    bands (:meth:`~seco_train.views.SeasonImages.pack`), ``layout`` (bands, 2) and ``scale`` (bands,)
    placing each band, and ``size`` the finest grid (height, width)."""
    height, width = images.shape[1:]
    plan = draw_plan(len(images), height, width, cfg, generator)
    layout, scales = images.layout()
    out = {"params": torch.tensor([v.row() for v in plan.views], dtype=torch.float64),
           "layout": torch.tensor(layout, dtype=torch.int64),
           "scale": torch.tensor(scales, dtype=torch.float64),
           "size": torch.tensor([height, width], dtype=torch.int64)}
    for g, arr in enumerate(images.pack(plan.seasons)):
        out[f"x{g}"] = torch.from_numpy(arr)
    return out


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """``default_collate`` of packed samples, after checking that they store their bands alike."""
    first = samples[0]
    for s in samples[1:]:
        if (s.keys() != first.keys() or any(s[k].shape != first[k].shape or s[k].dtype != first[k].dtype
                                            for k in first) or not torch.equal(s["layout"], first["layout"])):
            raise ShardError("a batch mixes samples whose arrays differ in bands, shape or dtype",
                             hint="train on shards exported alike (the same --bands, --dtype, --resample-10m)")
    return torch.utils.data.default_collate(samples)


def batch_bytes(batch: dict[str, torch.Tensor]) -> int:
    """Bytes of a collated batch (what crosses shared memory and the host-to-device copy)."""
    return sum(t.numel() * t.element_size() for t in batch.values())


# -- the plan: the host's reading of the parameters -----------------------------------------------------

class BatchPlan:
    """Which rows take each operation, with their factors, from a batch's ``params`` (B, V, fields).

    Rows are view-major: row ``v * B + b`` is view ``v`` of sample ``b``. ``aug_size`` is the (height,
    width) of the images the augmentation sees (the full image for seco, the crop for MoCo modes)."""

    def __init__(self, params: torch.Tensor, aug_size: tuple[int, int]):
        if params.ndim != 3 or params.shape[2] != len(COL):
            raise ValueError(f"params must be (batch, views, {len(COL)}), not {tuple(params.shape)}")
        p = params.detach().to("cpu", torch.float64).transpose(0, 1).reshape(-1, len(COL))
        self.batch, self.views = params.shape[0], params.shape[1]
        self.boxes = p[:, COL["top"]:COL["width"] + 1].clone()
        self.box_list = self.boxes.long().tolist()
        jitter = p[:, COL["jitter"]] > 0.5
        #: per position: [(op, rows, factor, 1 - factor)] (op 0..3: brightness, contrast, saturation, hue)
        self.jitter: list[list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]] = []
        for pos in range(4):
            order = p[:, COL["order0"] + pos].long()
            ops = []
            for op in range(4):
                rows = torch.nonzero(jitter & (order == op)).flatten()
                if rows.numel():
                    f = p[rows, COL["brightness"] + op]
                    scale = 6 * f if op == 3 else f  # hue: the rotation in sixths of a turn
                    ops.append((op, rows, scale.float().view(-1, 1, 1, 1), (1 - f).float().view(-1, 1, 1, 1)))
            self.jitter.append(ops)
        self.gray = torch.nonzero(p[:, COL["gray"]] > 0.5).flatten()
        self.flip = torch.nonzero(p[:, COL["flip"]] > 0.5).flatten()
        self.blur = torch.nonzero(p[:, COL["blur"]] > 0.5).flatten()
        sigmas = p[self.blur, COL["sigma"]].tolist()
        radii = [blur_radius(s, *aug_size) for s in sigmas]
        self.radius = max(radii, default=0)
        kernels = torch.zeros(len(sigmas), 2 * self.radius + 1, dtype=torch.float64)
        for k, (s, r) in enumerate(zip(sigmas, radii)):
            kernels[k, self.radius - r:self.radius + r + 1] = torch.tensor(blur_kernel(s, r), dtype=torch.float64)
        self.kernels = kernels.float()

    def to(self, device, non_blocking: bool = False) -> "BatchPlan":
        """The plan's tensors moved to ``device`` (in place; returns self)."""
        def move(t):
            return t.to(device, non_blocking=non_blocking)

        self.jitter = [[(op, move(r), move(a), move(b)) for op, r, a, b in ops] for ops in self.jitter]
        for name in ("gray", "flip", "blur", "kernels", "boxes"):
            setattr(self, name, move(getattr(self, name)))
        return self


# -- operations on batches ----------------------------------------------------------------------------

@contextlib.contextmanager
def ieee_fp32(device: torch.device):
    """cuDNN convolutions and cuBLAS products in full fp32 (no TF32) inside the block, on CUDA."""
    if torch.device(device).type != "cuda":
        yield
        return
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def _grey(x: torch.Tensor) -> torch.Tensor:
    return F.rgb_to_grayscale(x)


def jitter(x: torch.Tensor, plan: BatchPlan, hi: float) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.4, 0.1) of the rows of ``x`` (N, C, H, W) that take it, in place; each row's
    factors and order from the plan. Saturation and hue need three bands (else skipped, as per sample)."""
    rgb = x.shape[1] == 3
    for ops in plan.jitter:
        for op, rows, f, alpha in ops:
            if not rgb and op >= 2:
                continue
            sub = x.index_select(0, rows)
            if op == 0:
                sub = sub.mul_(f).clamp_(0, hi)
            elif op == 1:
                mean = _grey(sub).mean(dim=(-3, -2, -1), keepdim=True) if rgb else sub.mean(dim=(-2, -1), keepdim=True)
                sub = sub.mul_(f).add_(mean * alpha).clamp_(0, hi)
            elif op == 2:
                sub = sub.mul(f).add_(_grey(sub) * alpha).clamp_(0, hi)
            else:
                sub = rotate_hue(sub, f.view(-1, 1, 1))
            x.index_copy_(0, rows, sub)
    return x


def blur(x: torch.Tensor, rows: torch.Tensor, kernels: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur the ``rows`` of ``x`` (N, C, H, W) in place, row ``k`` with ``kernels[k]`` (2 radius + 1 taps,
    reflect padding), separably: along the width, then the height."""
    if not rows.numel():
        return x
    n, c, h, w = len(rows), *x.shape[1:]
    taps = 2 * radius + 1
    padded = nnf.pad(x.index_select(0, rows), (radius,) * 4, mode="reflect").reshape(1, n * c, h + 2 * radius,
                                                                                     w + 2 * radius)
    k = kernels.repeat_interleave(c, dim=0)
    with ieee_fp32(x.device):
        t = nnf.conv2d(padded, k.view(n * c, 1, 1, taps), groups=n * c)
        t = nnf.conv2d(t, k.view(n * c, 1, taps, 1), groups=n * c)
    return x.index_copy_(0, rows, t.view(n, c, h, w))


def augment(x: torch.Tensor, plan: BatchPlan, hi: float) -> torch.Tensor:
    """MoCo-v2's augmentation of the rows of ``x`` (N, C, H, W) that take it (in place): jitter, grayscale
    (three bands only), blur, horizontal flip."""
    jitter(x, plan, hi)
    if x.shape[1] == 3 and plan.gray.numel():
        x.index_copy_(0, plan.gray, F.rgb_to_grayscale(x.index_select(0, plan.gray), num_output_channels=3)
                      .contiguous())
    blur(x, plan.blur, plan.kernels, plan.radius)
    if plan.flip.numel():
        x.index_copy_(0, plan.flip, x.index_select(0, plan.flip).flip(-1))
    return x


def crop_weights(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """(N, size_out, size_in) float32 matrices: row ``o`` of matrix ``n`` holds the weights of output pixel
    ``o`` over the input when the crop ``[start, start + length)`` is resized to ``size_out`` by torch's
    antialiased bilinear interpolation (align_corners=False): PIL's triangle filter, widened by the
    downscaling factor, normalised to sum 1. The arithmetic follows torch's kernel
    (``_compute_indices_min_size_weights_aa``: the scale, the centre and each tap's argument rounded to
    float32, the rest in float64), so the weights are torch's, not merely close to them."""
    f32, f64 = torch.float32, torch.float64
    dev = start.device
    start = start.to(f64)[:, None, None]
    length = length.to(f32)[:, None, None]
    scale = length / size_out  # float32, as area_pixel_compute_scale<float>
    up = scale < 1
    support = torch.where(up, torch.ones_like(scale), scale)
    invscale = torch.where(up, torch.ones_like(scale), (1 / scale.to(f64)).to(f32))
    o = torch.arange(size_out, dtype=f64, device=dev)[None, :, None]
    centre = (scale.to(f64) * (o + 0.5)).to(f32)
    lo = torch.clamp(torch.trunc((centre - support).to(f64) + 0.5), min=0)
    hi = torch.minimum(torch.trunc((centre + support).to(f64) + 0.5), length.to(f64))
    hi = torch.minimum(hi, lo + torch.where(up, 2.0, torch.ceil(support.to(f64)) * 2 + 1))  # max_interp_size
    k = torch.arange(size_in, dtype=f64, device=dev)[None, None, :] - start  # crop coordinates, exact
    arg = ((k.to(f32) - centre).to(f64) + 0.5) * invscale.to(f64)
    w = torch.clamp(1 - arg.to(f32).abs(), min=0) * ((k >= lo) & (k < hi))
    return w / w.sum(dim=-1, keepdim=True)


def resized_crop(x: torch.Tensor, plan: BatchPlan, size: int, matmul: bool | None = None) -> torch.Tensor:
    """Row ``n`` of ``x`` (N, C, H, W) cropped to ``plan.boxes[n]`` and resized to (size, size), bilinear
    and antialiased. ``matmul``: as matrix products (default on CUDA) or torchvision view by view."""
    if matmul is None:
        matmul = x.device.type in MATMUL_DEVICES
    if not matmul:
        return torch.stack([F.resized_crop(x[n], i, j, h, w, [size, size], antialias=True)
                            for n, (i, j, h, w) in enumerate(plan.box_list)])
    n, c, height, width = x.shape
    out = torch.empty(n, c, size, size, dtype=x.dtype, device=x.device)
    boxes = plan.boxes.to(x.device)
    with ieee_fp32(x.device):
        for a in range(0, n, CROP_CHUNK):
            b = boxes[a:a + CROP_CHUNK]
            wy = crop_weights(b[:, 0], b[:, 2], height, size)
            wx = crop_weights(b[:, 1], b[:, 3], width, size)
            out[a:a + CROP_CHUNK] = torch.matmul(wy[:, None], torch.matmul(x[a:a + CROP_CHUNK], wx.transpose(1, 2)[:, None]))
    return out


# -- the device's side ----------------------------------------------------------------------------------

class BatchViews:
    """Turn a collated batch of :func:`pack_sample` outputs into ``(q, [k...])`` on ``device``:
    (B, C, size, size) float32 each, channels-last when ``channels_last``. Call it inside a side stream
    to overlap the copy and the augmentation with training (seco_train.data.DeviceBatches)."""

    def __init__(self, cfg: ViewConfig, device: str | torch.device = "cpu", *, channels_last: bool = False,
                 matmul: bool | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.matmul = matmul
        mean, std = cfg.normalisation()
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, seasons drawn, C, H, W) float32 images on the device: stretched, on the finest grid."""
        height, width = (int(v) for v in batch["size"][0])
        layout = batch["layout"][0].tolist()
        x0 = batch["x0"]
        b, n = x0.shape[:2]
        out = None
        scale = batch["scale"].to(self.device, non_blocking=True).float()
        g = 0
        while f"x{g}" in batch:
            channels = [c for c, (group, _) in sorted(enumerate(layout), key=lambda e: e[1][1]) if group == g]
            x = batch[f"x{g}"].to(self.device, non_blocking=True)
            x = x.reshape(b * n, *x.shape[2:])
            if x.dtype == torch.int16:  # uint16 DN shipped as their int16 bits
                x = x.to(torch.int32).bitwise_and_(0xFFFF)
            if self.cfg.stretch == "seco":
                x = x.float().div_(255)
            else:
                x = x.float().mul_(scale[:, channels].repeat_interleave(n, dim=0)[:, :, None, None])
            if x.shape[-2:] != (height, width):
                x = nnf.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
            if channels == list(range(len(layout))):
                out = x
            else:
                if out is None:
                    out = torch.empty(b * n, len(layout), height, width, dtype=torch.float32, device=self.device)
                out[:, channels] = x
            g += 1
        return out.view(b, n, len(layout), height, width)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        cfg = self.cfg
        images = self.images(batch)
        b = images.shape[0]
        height, width = images.shape[-2:]
        aug_size = (cfg.size, cfg.size) if CROP_FIRST[cfg.mode] else (height, width)
        plan = BatchPlan(batch["params"], aug_size).to(self.device, non_blocking=True)
        views = torch.stack([images[:, s] for s in SOURCES[cfg.mode]]).flatten(0, 1)  # view-major rows
        hi = upper_clamp(cfg)
        if CROP_FIRST[cfg.mode]:
            views = augment(resized_crop(views, plan, cfg.size, self.matmul), plan, hi)
        else:
            if any(AUGMENTED[cfg.mode]):
                views = augment(views, plan, hi)
            views = resized_crop(views, plan, cfg.size, self.matmul)
        views = views.sub_(self.mean).div_(self.std)
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        out = [views[v * b:(v + 1) * b] for v in range(plan.views)]
        return out[0], out[1:]
