"""Views made batched on the training device (seco_train.batched) against the per-sample path
(seco_train.views) and against the augmentation's specification (SECO.md section 2).

Exactness: on identical random parameters every operation agrees with the per-sample path within 1e-5
(values in [0, 1] for the seco stretch, reflectance for stats). The resized crop is held to the same
1e-5: its weights reproduce torch's float32 arithmetic (tested equal to torch's own weights to one
float32 rounding), so what remains is the summation order of the matrix products (~3e-7 measured).
Distributions: over 10,000 samples, the rates, the crop geometry and the pixels against
torchvision's own transforms composed as the specification says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from scipy import stats as sstats

from seco_data.errors import ShardError
from seco_train.batched import BatchPlan, BatchViews, augment, blur, collate, crop_weights, jitter, pack_sample, \
    resized_crop
from seco_train.views import (AUGMENTED, IMAGENET, SOURCES, SeasonImages, ViewConfig, ViewParams, apply_view,
                              draw_plan, gaussian_blur, make_views, upper_clamp)
from seco_train.views import augment as augment_one
from seco_train.views import crop as crop_one

TOL = 1e-5
STATS = {b: {"mean": 0.12, "std": 0.05} for b in ("B02", "B03", "B04", "B08", "B05", "B11", "B01")}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sample(key: int, rng: np.random.Generator, seasons=4, size=(72, 64), coarse=False, dtype=np.uint16) -> dict:
    """A decoded shard sample: 10 m B02 B03 B04 B08 and optionally 20 m B05 B11 and 60 m B01."""
    h, w = size
    hi = 3000 if dtype == np.uint16 else 255
    arrays = {"10m": {"bands": ["B02", "B03", "B04", "B08"], "scale": 1e-4 if dtype == np.uint16 else 1 / 255}}
    s = {"__key__": f"{key:07d}", "10m": rng.integers(0, hi, size=(seasons, 4, h, w)).astype(dtype)}
    if coarse:
        arrays["20m"] = {"bands": ["B05", "B11"], "scale": 1e-4}
        s["20m"] = rng.integers(0, 5000, size=(seasons, 2, h // 2, w // 2)).astype(np.uint16)
        arrays["60m"] = {"bands": ["B01"], "scale": 1e-4}
        s["60m"] = rng.integers(0, 2000, size=(seasons, 1, h // 6, w // 6)).astype(np.uint16)
    s["json"] = {"key": s["__key__"], "arrays": arrays}
    return s


def _plan(params: list[ViewParams], size) -> BatchPlan:
    """The plan of single views, one per row (batch = rows, one view each)."""
    rows = torch.tensor([[p.row()] for p in params], dtype=torch.float64)
    return BatchPlan(rows, size)


def _random_params(rng: np.random.Generator, n: int, h: int, w: int, **fixed) -> list[ViewParams]:
    out = []
    for _ in range(n):
        ch, cw = int(rng.integers(h // 3, h + 1)), int(rng.integers(w // 3, w + 1))
        p = dict(source=0, box=(int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw),
                 augmented=True, jitter=bool(rng.random() < 0.8),
                 factors=tuple(float(f) for f in (*rng.uniform(0.6, 1.4, 3), rng.uniform(-0.1, 0.1))),
                 order=tuple(int(k) for k in rng.permutation(4)), gray=bool(rng.random() < 0.3),
                 blur=bool(rng.random() < 0.5), sigma=float(rng.uniform(0.1, 2.0)), flip=bool(rng.random() < 0.5))
        p.update(fixed)
        out.append(ViewParams(**p))
    return out


# -- exactness, op by op --------------------------------------------------------------------------------

IDENTITY_JITTER = (1.0, 1.0, 1.0, 0.0)


@pytest.mark.parametrize("channels", [3, 1, 5])
def test_each_operation_matches_the_per_sample_path(channels):
    """Every operation alone on identical parameters: brightness, contrast, saturation, hue (each with the
    others at their identity), grayscale, blur (every radius, capped by a small image), flip, and all of
    them together in every order; both clamps (seco [0, 1], stats >= 0)."""
    rng = np.random.default_rng(channels)
    torch.manual_seed(channels)
    n, h, w = 48, 30, 26
    x = torch.rand(n, channels, h, w) * 1.1  # a few values above 1: the clamps matter
    x[:4, :, :5] = 0.4  # flat grey patches (hue: no chroma), ties between channels
    if channels == 3:
        x[4:8, 1] = x[4:8, 0]
    cases = {}
    for op in range(4):
        factors = [list(IDENTITY_JITTER) for _ in range(n)]
        for f in factors:
            f[op] = float(rng.uniform(0.6, 1.4)) if op < 3 else float(rng.uniform(-0.1, 0.1))
        cases[f"jitter op {op}"] = [ViewParams(0, (0, 0, h, w), True, True, tuple(f), (op, 0, 1, 2) if op else
                                               (0, 1, 2, 3)) for f in factors]
    cases["jitter, random orders"] = _random_params(rng, n, h, w, gray=False, blur=False, flip=False, jitter=True)
    cases["grayscale"] = [ViewParams(0, (0, 0, h, w), True, gray=bool(k % 2)) for k in range(n)]
    cases["blur"] = [ViewParams(0, (0, 0, h, w), True, blur=bool(k % 3), sigma=0.1 + 1.9 * k / n) for k in range(n)]
    cases["flip"] = [ViewParams(0, (0, 0, h, w), True, flip=bool(k % 2)) for k in range(n)]
    cases["everything"] = _random_params(rng, n, h, w)
    tiny = torch.rand(6, channels, 4, 5)  # blur radius capped at min(h, w) - 1
    for stretch in ("seco", "stats"):
        hi = 1.0 if stretch == "seco" else math.inf
        for name, params in cases.items():
            want = torch.stack([augment_one(x[k], p, hi) for k, p in enumerate(params)])
            got = augment(x.clone(), _plan(params, (h, w)), hi)
            assert float((got - want).abs().max()) <= TOL, (stretch, name)
        params = [ViewParams(0, (0, 0, 4, 5), True, blur=True, sigma=s) for s in (0.1, 0.5, 1.0, 1.5, 1.9, 2.0)]
        want = torch.stack([augment_one(tiny[k], p, hi) for k, p in enumerate(params)])
        torch.testing.assert_close(augment(tiny.clone(), _plan(params, (4, 5)), hi), want, atol=TOL, rtol=0)
    # the batched pieces themselves, against torchvision where it has them
    plan = _plan(cases["blur"], (h, w))
    got = blur(x.clone(), plan.blur, plan.kernels, plan.radius)
    for k, p in enumerate(cases["blur"]):
        if p.blur:
            r = math.ceil(3 * p.sigma)
            ref = F.gaussian_blur(x[k], [2 * r + 1] * 2, [p.sigma] * 2)
            torch.testing.assert_close(got[k], ref, atol=TOL, rtol=0)
            torch.testing.assert_close(got[k], gaussian_blur(x[k], p.sigma), atol=TOL, rtol=0)
        else:
            assert torch.equal(got[k], x[k])
    if channels == 3:
        only_hue = cases["jitter op 3"]
        got = jitter(x.clone().clamp_(0, 1), _plan(only_hue, (h, w)), 1.0)
        ref = torch.stack([F.adjust_hue(x[k].clamp(0, 1), p.factors[3]) for k, p in enumerate(only_hue)])
        torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_resized_crop_matches_torchvision_and_its_weights_are_torchs():
    # torch's own weights, read off by resizing unit impulses (each input pixel alone)
    for length, out in [(100, 224), (187, 224), (224, 224), (240, 224), (264, 224), (264, 64), (57, 32), (5, 32)]:
        eye = torch.eye(length).view(length, 1, length, 1).expand(length, 1, length, 2).contiguous()
        theirs = nnf.interpolate(eye, size=(out, 2), mode="bilinear", align_corners=False, antialias=True)[:, 0, :, 0].T
        ours = crop_weights(torch.tensor([0.0]), torch.tensor([float(length)]), length, out)[0]
        assert float((ours - theirs).abs().max()) <= 2.5e-7, (length, out)  # one float32 rounding
        shifted = crop_weights(torch.tensor([7.0]), torch.tensor([float(length)]), length + 9, out)[0]
        torch.testing.assert_close(shifted[:, 7:7 + length], ours, atol=2.5e-7, rtol=0)  # the box, not the image
        assert not shifted[:, :7].any() and not shifted[:, 7 + length:].any()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    h, w, size = 96, 80, 56
    x = torch.rand(64, 3, h, w)
    params = _random_params(rng, 64, h, w)
    params[0] = ViewParams(0, (0, 0, h, w))  # the whole image
    params[1] = ViewParams(0, (3, 5, size, size))  # no resizing: the crop itself
    params[2] = ViewParams(0, (3, 5, size, 70))  # one dimension only
    want = torch.stack([crop_one(x[k], p.box, size) for k, p in enumerate(params)])
    plan = _plan(params, (h, w))
    for matmul in (True, False):
        got = resized_crop(x, plan, size, matmul=matmul)
        assert float((got - want).abs().max()) <= TOL, matmul
    assert torch.equal(resized_crop(x, plan, size, matmul=True)[1], want[1])


@pytest.mark.parametrize("mode", ["seco", "moco", "moco_tp"])
def test_views_of_a_batch_equal_the_per_sample_views(mode):
    """End to end, from packed samples (uint8 after the seco stretch, DN for stats, coarser bands
    upsampled on the device) to normalised views: the per-sample path on the same generators."""
    rng = np.random.default_rng(1)
    configs = [ViewConfig(mode=mode, size=40),
               ViewConfig(mode=mode, size=40, bands=("B04", "B11", "B01"), stretch="stats", stats=STATS),
               ViewConfig(mode=mode, size=24, bands=("B05",), stretch="stats", stats=STATS),
               ViewConfig(mode=mode, size=40, bands=("B08", "B04", "B11", "B02", "B05"), stretch="stats", stats=STATS)]
    samples = [_sample(k, rng, coarse=True) for k in range(10)]
    eight_bit = [_sample(k, rng, dtype=np.uint8) for k in range(6)]  # SeCo uint8 (scale 1/255)
    for cfg in configs + [ViewConfig(mode=mode, size=40)]:
        batch_of = eight_bit if cfg is not configs[0] and cfg.stretch == "seco" else samples
        want = [make_views(SeasonImages(s, cfg), cfg, torch.Generator().manual_seed(k)) for k, s in enumerate(batch_of)]
        batch = collate([pack_sample(SeasonImages(s, cfg), cfg, torch.Generator().manual_seed(k))
                         for k, s in enumerate(batch_of)])
        _, std = cfg.normalisation()
        std = torch.tensor(std).view(-1, 1, 1)
        for matmul in (True, False):
            q, keys = BatchViews(cfg, matmul=matmul, channels_last=matmul)(batch)
            assert len(keys) == cfg.num_views - 1 and q.shape == (len(batch_of), len(cfg.bands), cfg.size, cfg.size)
            assert q.is_contiguous(memory_format=torch.channels_last if matmul else torch.contiguous_format)
            for b, views in enumerate(want):
                for got, ref in zip([q[b], *(k[b] for k in keys)], views):
                    assert float(((got - ref) * std).abs().max()) <= TOL, (cfg.bands, cfg.stretch, matmul)


def test_packed_samples_are_compact_and_batches_refuse_mixed_layouts():
    rng = np.random.default_rng(2)
    cfg = ViewConfig(size=224)
    s = _sample(0, rng, size=(264, 264))
    packed = pack_sample(SeasonImages(s, cfg), cfg, torch.Generator().manual_seed(0))
    assert packed["x0"].dtype == torch.uint8 and packed["x0"].shape == (3, 3, 264, 264)  # q/k2, k0, k1 seasons
    shipped = sum(t.numel() * t.element_size() for t in packed.values())
    views = sum(v.numel() * v.element_size() for v in make_views(SeasonImages(s, cfg), cfg, torch.Generator()))
    assert shipped < views / 3.8  # 627 KB instead of 2.4 MB of float32 views
    stats = ViewConfig(size=224, bands=("B08",), stretch="stats", stats=STATS)
    packed = pack_sample(SeasonImages(s, stats), stats, torch.Generator().manual_seed(0))
    assert packed["x0"].dtype == torch.int16  # uint16 DN, as their bits
    both = ViewConfig(size=32, bands=("B04", "B11"), stretch="stats", stats=STATS)
    native = _sample(1, rng, size=(24, 24), coarse=True)  # B11 at 20 m
    resampled = _sample(2, rng, size=(24, 24))
    resampled["json"]["arrays"]["10m"]["bands"] = ["B02", "B03", "B04", "B11"]  # B11 on the 10 m grid
    mixed = [pack_sample(SeasonImages(x, both), both, torch.Generator()) for x in (native, resampled)]
    with pytest.raises(ShardError, match="differ"):
        collate(mixed)


# -- distributions over 10,000 samples -----------------------------------------------------------------

N = 10_000


def _ks(a, b) -> float:
    return sstats.ks_2samp(np.asarray(a), np.asarray(b)).pvalue


def _rate_ok(hits: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(hits / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_random_choices_follow_the_specification():
    """10,000 plans: seasons, jitter/grayscale/blur/flip rates, factor ranges, orders, sigma, and the crop
    geometry against torchvision's RandomResizedCrop.get_params (its own RNG), by KS tests."""
    h, w = 264, 264
    cfg = ViewConfig(size=224)
    plans = [draw_plan(4, h, w, cfg, torch.Generator().manual_seed(k)) for k in range(N)]
    seasons = np.array([p.seasons for p in plans])
    assert all(_rate_ok(int((seasons[:, j] == s).sum()), N, 0.25) for j in range(3) for s in range(4))
    assert _rate_ok(int((seasons[:, 0] == seasons[:, 1]).sum()), N, 0.25)  # drawn with replacement
    aug = [v for p in plans for v in p.views if v.augmented]
    plain = [v for p in plans for v in p.views if not v.augmented]
    assert len(aug) == len(plain) == 2 * N and [p.views[k].augmented for k in range(4) for p in plans[:1]] == \
        list(AUGMENTED["seco"])
    m = len(aug)
    for name, p in (("jitter", 0.8), ("gray", 0.2), ("blur", 0.5), ("flip", 0.5)):
        assert _rate_ok(sum(getattr(v, name) for v in aug), m, p), name
    factors = np.array([v.factors for v in aug])
    for k, (lo, hi) in enumerate([(0.6, 1.4)] * 3 + [(-0.1, 0.1)]):
        assert _ks(factors[:, k], np.random.default_rng(k).uniform(lo, hi, m)) > 1e-3
    assert _ks([v.sigma for v in aug], np.random.default_rng(9).uniform(0.1, 2.0, m)) > 1e-3
    orders = {}
    for v in aug:
        orders[v.order] = orders.get(v.order, 0) + 1
    assert len(orders) == 24 and sstats.chisquare(list(orders.values())).pvalue > 1e-3
    # crops: area fraction and log aspect ratio of all 40,000 boxes against torchvision's sampler
    torch.manual_seed(0)
    img = torch.empty(1, h, w)
    theirs = np.array([T.RandomResizedCrop.get_params(img, (0.2, 1.0), (3 / 4, 4 / 3)) for _ in range(4 * N)])
    ours = np.array([v.box for p in plans for v in p.views])
    for f in (lambda b: b[:, 2] * b[:, 3] / (h * w), lambda b: np.log(b[:, 3] / b[:, 2]),
              lambda b: b[:, 0] + b[:, 2] / 2, lambda b: b[:, 1] + b[:, 3] / 2):
        assert _ks(f(ours), f(theirs)) > 1e-3
    area = ours[:, 2] * ours[:, 3] / (h * w)
    assert area.min() >= 0.19 and area.max() <= 1.0


def _reference_view(img: torch.Tensor, size: int) -> torch.Tensor:
    """crop(aug(img)) composed from torchvision's transforms as SECO.md section 2 specifies (torch's
    global RNG): ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, RandomGrayscale 0.2, Gaussian blur sigma
    U[0.1, 2] with radius ceil(3 sigma) p=0.5, horizontal flip, RandomResizedCrop(scale 0.2-1), ImageNet."""
    if torch.rand(()) < 0.8:
        img = T.ColorJitter(0.4, 0.4, 0.4, 0.1)(img)
    img = T.RandomGrayscale(0.2)(img)
    if torch.rand(()) < 0.5:
        sigma = float(0.1 + 1.9 * torch.rand(()))
        k = 2 * math.ceil(3 * sigma) + 1
        img = F.gaussian_blur(img, [k, k], [sigma, sigma])
    img = T.RandomHorizontalFlip()(img)
    img = T.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True)(img)
    return F.normalize(img, [IMAGENET[b][0] for b in ("B04", "B03", "B02")], [IMAGENET[b][1] for b in ("B04", "B03", "B02")])


def _batched_views(images: torch.Tensor, cfg: ViewConfig, n: int, chunk: int = 1000) -> list[torch.Tensor]:
    """The device path's views of ``n`` samples whose every season is ``images`` ((C, H, W), stretched),
    in batches, from generators seeded 0..n-1."""
    out = []
    u8 = (images * 255).round().to(torch.uint8)
    for a in range(0, n, chunk):
        rows = []
        for k in range(a, min(n, a + chunk)):
            plan = draw_plan(1, *images.shape[1:], cfg, torch.Generator().manual_seed(k))
            rows.append({"params": torch.tensor([v.row() for v in plan.views], dtype=torch.float64),
                         "layout": torch.tensor([[0, c] for c in range(images.shape[0])]),
                         "scale": torch.ones(images.shape[0], dtype=torch.float64),
                         "size": torch.tensor(images.shape[1:]), "x0": u8[None].expand(3, *u8.shape).clone()})
        q, keys = BatchViews(cfg, matmul=True)(collate(rows))
        out.append(torch.stack([q, *keys], dim=1))
    return list(torch.cat(out).unbind(1))


def test_views_follow_the_specification_over_10000_samples():
    """The device path on 10,000 samples: flip, grayscale and jitter rates read off the views, and the
    pixels of the augmented views (per-channel mean and std, KS tests of the histograms) against
    torchvision's transforms composed as the specification says."""
    size = 24
    cfg = ViewConfig(size=size)
    _, std = cfg.normalisation()
    mean = torch.tensor(cfg.normalisation()[0]).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    h = w = 40
    x = torch.linspace(0.1, 0.9, w)
    # (a) a grey left-to-right ramp: only a flip makes it fall (jitter keeps it rising, blur and crop too)
    ramp = (x[None, None, :].expand(3, h, w) * 255).round() / 255
    q, k0, k1, k2 = _batched_views(ramp, cfg, N)
    for v, flipped_at in ((q, 0.0), (k1, 0.0), (k0, 0.5), (k2, 0.5)):
        slope = (v.sum(1)[:, :, -4:].mean((1, 2)) - v.sum(1)[:, :, :4].mean((1, 2))).numpy()
        assert _rate_ok(int((slope < 0).sum()), N, flipped_at) if flipped_at else (slope > 0).all()
    # (b) one colour: grey only by RandomGrayscale; changed colour only by the jitter (brightness alone
    # changes it almost surely); crops, blur and flips keep a constant image
    colour = torch.tensor([180.0, 100.0, 40.0]).view(3, 1, 1).expand(3, h, w) / 255
    views = [(v * std + mean) for v in _batched_views(colour, cfg, N)]
    for v in (views[0], views[2]):
        assert float((v - colour[None, :, :size, :size]).abs().max()) < 1e-5
    aug = torch.cat([views[1], views[3]])
    px = aug[:, :, size // 2, size // 2]
    assert float((aug - px[:, :, None, None]).abs().max()) < 1e-4  # still constant
    grey = (px.max(1).values - px.min(1).values) < 1e-5
    changed = (px - colour[:, 0, 0]).abs().max(1).values > 1e-5
    grey_of_original = (px - F.rgb_to_grayscale(colour[:, :1, :1])[0, 0, 0]).abs().max(1).values < 1e-5
    assert _rate_ok(int(grey.sum()), 2 * N, 0.2)
    assert _rate_ok(int((changed & ~grey).sum() + (grey & ~grey_of_original).sum()), 2 * N, 0.8)
    # (c) a textured colour image: the augmented views' pixels against the reference composition
    g = torch.Generator().manual_seed(5)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    texture = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 2 * yy), 0.3 + 0.25 * torch.cos(5 * yy),
                           0.2 + 0.15 * xx * yy]) + 0.08 * torch.rand(3, h, w, generator=g)
    texture = (texture.clamp(0, 1) * 255).round() / 255
    _, k0, _, k2 = _batched_views(texture, cfg, N // 2)
    ours = torch.cat([k0, k2])
    torch.manual_seed(11)
    theirs = torch.stack([_reference_view(texture, size) for _ in range(N)])
    rng = np.random.default_rng(3)
    i, j = rng.integers(size, size=N), rng.integers(size, size=N)
    for c in range(3):
        a, b = ours[:, c], theirs[:, c]
        view_means = (a.mean((1, 2)).numpy(), b.mean((1, 2)).numpy())
        view_stds = (a.std((1, 2)).numpy(), b.std((1, 2)).numpy())
        for ours_c, theirs_c in (view_means, view_stds):
            se = math.sqrt(ours_c.var() / N + theirs_c.var() / N)
            assert abs(ours_c.mean() - theirs_c.mean()) < 4.5 * se, c
            assert _ks(ours_c, theirs_c) > 1e-3, c
        # one pixel per view: independent draws of the pixel histogram
        assert _ks(a[np.arange(N), i, j].numpy(), b[np.arange(N), i, j].numpy()) > 1e-3, c


def test_planned_rows_are_view_major():
    cfg = ViewConfig(mode="moco_tp", size=16)
    plans = [draw_plan(3, 20, 20, cfg, torch.Generator().manual_seed(k)) for k in range(5)]
    params = torch.tensor([[v.row() for v in p.views] for p in plans], dtype=torch.float64)
    plan = BatchPlan(params, (16, 16))
    want = [v.box for k in range(len(SOURCES[cfg.mode])) for v in (p.views[k] for p in plans)]
    assert plan.box_list == [list(b) for b in want]
    flips = [r for r, v in enumerate(v for k in range(2) for v in (p.views[k] for p in plans)) if v.flip]
    assert plan.flip.tolist() == flips
    assert upper_clamp(cfg) == 1.0 and apply_view(torch.zeros(3, 20, 20), plans[0].views[0], cfg).shape == (3, 16, 16)
