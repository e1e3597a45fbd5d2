"""SeasonalContrast: the loss against an independent per-sample reference and closed forms, the queues,
the momentum update, bf16 autocast (SECO.md section 2)."""

import math

import pytest
import torch

from seco_train.losses import normalize
from seco_train.model import SeasonalContrast, build_backbone

from helpers import tiny_encoder

B, K, DIM, SIZE, T = 4, 32, 16, 32, 0.07


def make(mode="seco", queue_size=K, momentum=0.9, seed=0, backbone=None) -> SeasonalContrast:
    """The model with a tiny CNN encoder (the loss, queues and momentum do not depend on the ResNet)."""
    torch.manual_seed(seed)
    return SeasonalContrast(backbone=backbone or tiny_encoder(), mode=mode, dim=DIM, queue_size=queue_size,
                            momentum=momentum, temperature=T)


def batch(mode="seco", seed=1, n=B):
    g = torch.Generator().manual_seed(seed)
    views = 4 if mode == "seco" else 2
    x = [torch.randn(n, 3, SIZE, SIZE, generator=g) for _ in range(views)]
    return x[0], x[1:]


def perturb_queries(model, seed=2):
    """Make the query side differ from the key side, so the momentum update matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model._query_params():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def reference_loss(z_q, z_k, queues, temperature):
    """Per sample, per subspace: logits [positive, queue..., in-batch extras...], hand-made cross-entropy.

    z_q[i]: (B, D) queries of head i; z_k[i][j]: (B, D) key j embedded by key head i.
    """
    n_sub, total, per_sub, accs = len(z_q), 0.0, [], []
    for i in range(n_sub):
        extras = [z_k[i][j][m] for j in range(n_sub) if j != i for m in range(len(z_q[i]))] if i > 0 else []
        s, hits = 0.0, 0
        for n in range(len(z_q[i])):
            q = z_q[i][n].double()
            logits = [q @ z_k[i][i][n].double()]
            logits += [q @ row.double() for row in queues[i]]
            logits += [q @ e.double() for e in extras]
            logits = torch.stack(logits) / temperature
            top = logits.max()
            s += float(torch.log(torch.exp(logits - top).sum()) + top - logits[0])
            hits += int(logits[0] >= logits[1:].max())
        per_sub.append(s / len(z_q[i]))
        accs.append(hits / len(z_q[i]))
        total += per_sub[-1]
    return total, per_sub, accs


@pytest.mark.parametrize("mode", ["seco", "moco"])
def test_loss_matches_per_sample_reference(mode):
    model = make(mode, backbone="resnet18")  # a realistic, non-degenerate loss (a tiny CNN gives loss_0 ~ 0)
    perturb_queries(model)
    q, keys = batch(mode)
    queues = [model.queue(i).clone() for i in range(model.num_subspaces)]
    loss, metrics = model(q, keys)

    # expected embeddings from the submodules (train mode: BN uses batch statistics, as in forward);
    # the key encoder now holds the momentum-updated weights the forward used for the keys
    with torch.no_grad():
        f_q = model.encoder_q(q)
        f_k = [model.encoder_k(k) for k in keys]
        z_q = [normalize(model.heads_q[i](f_q)) for i in range(model.num_subspaces)]
        z_k = [[normalize(model.heads_k[i](f)) for f in f_k] for i in range(model.num_subspaces)]
    total, per_sub, accs = reference_loss(z_q, z_k, queues, T)

    n = model.num_subspaces
    expected_keys = {"loss"} | {f"{k}_{i}" for k in ("loss", "acc") for i in range(n)}
    assert set(metrics) == expected_keys
    assert loss.item() == pytest.approx(total, rel=1e-5)
    assert metrics["loss"].item() == pytest.approx(total, rel=1e-5)
    for i in range(n):
        assert metrics[f"loss_{i}"].item() == pytest.approx(per_sub[i], rel=1e-5)
        assert metrics[f"acc_{i}"].item() == pytest.approx(accs[i])
        assert not metrics[f"loss_{i}"].requires_grad
    # the momentum update happened before the keys: keys from the pre-update encoder give another loss
    stale = make(mode, backbone="resnet18")
    with torch.no_grad():
        stale_k = [[normalize(model.heads_k[i](stale.encoder_k(k))) for k in keys] for i in range(n)]
    assert reference_loss(z_q, stale_k, queues, T)[0] != pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("mode,negatives", [("seco", [K, K + 2 * B, K + 2 * B]), ("moco", [K]), ("moco_tp", [K])])
def test_identical_embeddings_give_log_of_one_plus_negatives(mode, negatives):
    model = make(mode)
    c = torch.randn(DIM)
    with torch.no_grad():
        for head in model.heads_q:  # every head outputs c, whatever the input
            head[2].weight.zero_()
            head[2].bias.copy_(c)
        model.heads_k.load_state_dict(model.heads_q.state_dict())
        for i in range(model.num_subspaces):
            model.queue(i).copy_(normalize(c.expand(K, DIM)))
    q, keys = batch(mode)
    loss, metrics = model(q, keys)
    for i, n_neg in enumerate(negatives):
        assert metrics[f"loss_{i}"].item() == pytest.approx(math.log(1 + n_neg), rel=1e-5)
    assert loss.item() == pytest.approx(sum(math.log(1 + n) for n in negatives), rel=1e-5)


def test_queue_pointer_wraps_and_holds_the_latest_positive_keys():
    k_small = 8  # two batches of 4: after three steps rows 0-3 hold step 3, rows 4-7 step 2
    model = make("seco", queue_size=k_small)
    seen = []
    for step in range(3):
        q, keys = batch("seco", seed=10 + step)
        model(q, keys)
        with torch.no_grad():  # each subspace's positive: key i embedded by key head i
            seen.append([normalize(model.heads_k[i](model.encoder_k(keys[i]))) for i in range(3)])
        for i in range(3):
            assert int(model.queue_ptr(i)) == ((step + 1) * B) % k_small
    for i in range(3):
        torch.testing.assert_close(model.queue(i)[:4], seen[2][i], rtol=0, atol=1e-6)
        torch.testing.assert_close(model.queue(i)[4:], seen[1][i], rtol=0, atol=1e-6)
        assert torch.allclose(model.queue(i).norm(dim=1), torch.ones(k_small))

    bad = make("seco", queue_size=10)
    before = {k: v.clone() for k, v in bad.state_dict().items()}
    with pytest.raises(ValueError, match="not divisible by the global batch 4"):
        bad(*batch("seco"))
    assert all(torch.equal(v, before[k]) for k, v in bad.state_dict().items())  # nothing was updated


def test_momentum_update_and_key_encoder_gets_no_gradient():
    m = 0.9
    model = make("seco", momentum=m)
    perturb_queries(model)
    key_before = [p.clone() for p in model._key_params()]
    query_before = [p.detach().clone() for p in model._query_params()]
    loss, _ = model(*batch("seco"))
    loss.backward()
    for k_new, k_old, q_old in zip(model._key_params(), key_before, query_before, strict=True):
        assert torch.equal(k_new, torch.lerp(k_old, q_old, 1 - m))  # the foreach lerp, exactly
        torch.testing.assert_close(k_new, m * k_old + (1 - m) * q_old, atol=1e-6, rtol=0)
        assert k_new.grad is None and not k_new.requires_grad
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model._query_params())
    assert model.backbone is model.encoder_q


def test_deterministic_initialisation():
    a, b = make("seco", backbone="resnet18"), make("seco", backbone="resnet18")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert all(torch.equal(p, k) for p, k in zip(a.encoder_q.parameters(), a.encoder_k.parameters()))
    assert not torch.equal(a.queue(0), a.queue(1))
    assert a.feature_dim == 512 and make("seco").feature_dim == tiny_encoder().width
    assert build_backbone("resnet18", 13)[0].conv1.in_channels == 13


def test_bf16_autocast_channels_last_forward_backward():
    model = make("seco", backbone="resnet18").to(memory_format=torch.channels_last)
    q, keys = batch("seco")
    q = q.contiguous(memory_format=torch.channels_last)
    keys = [k.contiguous(memory_format=torch.channels_last) for k in keys]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = model(q, keys)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert all(model.queue(i).dtype == torch.float32 for i in range(3))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model._query_params())


def _ddp_worker(rank, world, init_file, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = make("seco", queue_size=16)
        # key encoder in eval mode: a key no longer depends on its batch-mates, so the shuffle-BN round
        # trip (gather, permute, encode, gather, unpermute) must hand each rank back its own keys in order
        model.encoder_k.eval()
        q, keys = batch("seco", seed=20 + rank)
        model(q, keys)[0].backward()
        with torch.no_grad():
            mine = [normalize(model.heads_k[i](model.encoder_k(keys[i]))) for i in range(3)]
        model.encoder_k.train()  # shuffle-BN proper, channels_last inputs
        q, keys = batch("seco", seed=30 + rank)
        cl = torch.channels_last
        loss, _ = model(q.contiguous(memory_format=cl), [k.contiguous(memory_format=cl) for k in keys])
        loss.backward()
        torch.save({"mine": mine, "loss": loss.detach(),
                    "queues": [model.queue(i).clone() for i in range(3)],
                    "ptr": [int(model.queue_ptr(i)) for i in range(3)]}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two gloo processes: ~4 s
def test_ddp_gathers_keys_and_shuffle_bn_round_trips(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    for i in range(3):
        torch.testing.assert_close(r0["queues"][i], r1["queues"][i], rtol=0, atol=0)  # identical on every rank
        # step 1 wrote rank 0's then rank 1's keys at rows 0-7; step 2 wrote rows 8-15
        torch.testing.assert_close(r0["queues"][i][:8], torch.cat([r0["mine"][i], r1["mine"][i]]), rtol=0, atol=1e-6)
        assert r0["ptr"][i] == 0 and torch.isfinite(r0["loss"])
