"""Backbone weights: export / load round trip, official SeCo and torchgeo/timm layouts, clear errors."""

import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from seco_data.errors import OutputError, UsageError
from seco_train.model import SeasonalContrast
from seco_train.weights import backbone_state_dict, export_backbone, load_backbone

X3 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class AttributeDict(dict):
    """Stands for Lightning's hyper-parameter dict: a class torch's weights_only loader refuses."""


class ModelCheckpoint:
    """Stands for a Lightning callback class (PL 1.x keys callback states by class)."""


def features(net, x=X3):
    with torch.no_grad():
        return net.eval()(x)


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights and BN statistics, so a mix-up of tensors cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                v.copy_(v + 0.1 * torch.randn(v.shape, generator=g).abs() if "running_var" in k
                        else v + 0.1 * torch.randn(v.shape, generator=g))
    return net


def test_training_checkpoint_export_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SeasonalContrast(mode="seco", queue_size=8, dim=8)
    randomised(model.encoder_q, 1)  # query and key encoders differ: the query one must be picked
    ckpt = tmp_path / "checkpoint.pt"
    # as the trainer writes it, NumPy RNG state included (not loadable with weights_only=True)
    torch.save({"model": model.state_dict(), "config": {"model": {"backbone": "resnet18"}}, "step": 3,
                "rng": {"numpy": np.random.get_state()}}, ckpt)

    out = export_backbone(ckpt, tmp_path / "sub" / "backbone.pt")
    exported = torch.load(out, weights_only=True)
    expected = backbone_state_dict(model)
    assert list(exported) == list(expected) and not any(k.startswith("fc.") for k in exported)
    assert all(torch.equal(exported[k], v) for k, v in expected.items())
    assert [p.name for p in out.parent.iterdir()] == ["backbone.pt"]  # no temporary left behind

    want = features(model.backbone)
    for source in (ckpt, out, str(out)):
        net = load_backbone(source)
        assert isinstance(net, torchvision.models.ResNet) and isinstance(net.fc, nn.Identity)
        assert torch.equal(features(net), want)
    with pytest.raises(OutputError, match="already exists"):
        export_backbone(ckpt, out)
    assert export_backbone(ckpt, out, overwrite=True) == out


def test_official_seco_lightning_checkpoint(tmp_path):
    resnet = randomised(torchvision.models.resnet18(weights=None), 2)
    key_copy = randomised(torchvision.models.resnet18(weights=None), 3)
    # the reference MocoV2: encoder_q = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
    encoder_q = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
    encoder_k = nn.Sequential(*list(key_copy.children())[:-1], nn.Flatten())
    state = {f"encoder_q.{k}": v for k, v in encoder_q.state_dict().items()}
    state |= {f"encoder_k.{k}": v for k, v in encoder_k.state_dict().items()}
    state |= {"heads_q.0.0.weight": torch.randn(512, 512), "queue": torch.randn(3, 128, 16)}
    assert "encoder_q.4.0.conv1.weight" in state and "encoder_q.0.weight" in state
    ckpt = tmp_path / "seco_resnet18_1m.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": AttributeDict(base_encoder="resnet18", emb_spaces=3),
                "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(1.0)}}}, ckpt)
    with pytest.raises(pickle.UnpicklingError):  # the fallback path is what this test exercises
        torch.load(ckpt, weights_only=True)

    resnet.fc = nn.Identity()
    assert torch.equal(features(load_backbone(ckpt)), features(resnet))
    exported = export_backbone(ckpt, tmp_path / "seco_r18.pt")
    assert torch.equal(features(load_backbone(exported)), features(resnet))


def test_torchgeo_timm_state_dict_with_prefix_13_bands(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = randomised(timm.create_model("resnet18", in_chans=13, num_classes=10), 4)
    momentum = randomised(timm.create_model("resnet18", in_chans=13, num_classes=10), 5)
    # a torchgeo MoCo trainer checkpoint: backbone.* plus backbone_momentum.*, fc included
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    state |= {f"backbone_momentum.{k}": v for k, v in momentum.state_dict().items()}
    assert "backbone.fc.weight" in state
    ckpt = tmp_path / "torchgeo.ckpt"
    torch.save({"state_dict": state}, ckpt)
    plain = tmp_path / "timm.pth"  # torchgeo's published weights: a bare timm state dict
    torch.save(net.state_dict(), plain)

    x13 = torch.randn(2, 13, 32, 32)
    net.reset_classifier(0)
    want = features(net, x13)
    for source in (ckpt, plain, {"model." + k: v for k, v in torch.load(plain, weights_only=True).items()}):
        got = features(load_backbone(source, "resnet18", in_channels=13), x13)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    with pytest.raises(UsageError) as err:  # right file, wrong channel count: the hint says what to pass
        load_backbone(plain)
    assert "conv1.weight (64, 13, 7, 7) vs (64, 3, 7, 7)" in str(err.value)
    assert "in_channels=13" in err.value.one_line()


def test_random_and_errors(tmp_path):
    net = load_backbone("random", "resnet18", in_channels=13)
    assert features(net, torch.randn(2, 13, 32, 32)).shape == (2, 512)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint\n" * 50)
    foreign = tmp_path / "foreign.pt"
    torch.save({"encoder.weight": torch.zeros(3), "head.bias": torch.zeros(2)}, foreign)
    r50 = tmp_path / "r50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), r50)
    cases = [
        (garbage, "cannot read", "garbage.pt"),
        (tmp_path / "missing.pt", "no such file", "missing.pt"),
        (foreign, "no ResNet backbone found", "encoder.weight, head.bias"),
        (r50, "does not match resnet18", "unexpected layer1.0.conv3.weight"),
    ]
    for path, what, detail in cases:
        with pytest.raises(UsageError) as err:
            load_backbone(path)
        line = err.value.one_line()
        assert str(path) in line and what in line and detail in line and "\n" not in line
    with pytest.raises(UsageError) as err:
        load_backbone(r50)
    assert "pass name='resnet50', in_channels=3" in err.value.one_line()
    assert features(load_backbone(r50, "resnet50"), X3).shape == (2, 2048)
