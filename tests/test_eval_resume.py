"""An interrupted long evaluation resumes from its epoch checkpoint with the numbers of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn
from torch.utils.data import Dataset

from seco_data.errors import UsageError
from seco_train.evaluate import protocols
from seco_train.evaluate.checkpoint import EpochCheckpoint
from seco_train.evaluate.protocols import ProtocolConfig


class Tiny(Dataset):
    """Random 3 x 16 x 16 images in 3 classes, made from a seed."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 3, 16, 16, generator=g)
        self.targets = torch.randint(0, 3, (n,), generator=g).tolist()
        self.fingerprint = f"tiny-{n}-{seed}"

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


def _backbone() -> nn.Module:
    torch.manual_seed(5)
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    return net


class Stop(Exception):
    pass


def _run(protocol: str, cfg: ProtocolConfig, checkpoint: EpochCheckpoint | None = None, stop_after: int | None = None):
    backbone = _backbone()
    epochs = []

    def progress(event):
        if event.stage == "epoch":
            epochs.append(event.done)
            if event.done == stop_after:
                raise Stop  # as a kill after the epoch's checkpoint

    result = protocols.PROTOCOLS[protocol](backbone, Tiny(40, 1), {"val": Tiny(12, 2)}, task="multiclass",
                                           num_classes=3, config=cfg, progress=progress, checkpoint=checkpoint)
    return result, {k: v.clone() for k, v in backbone.state_dict().items()}, epochs


CASES = {
    # the reference EuroSAT recipe: BatchNorm statistics move while the head learns (step schedule crossing
    # a milestone after the resume)
    "linear, backbone in train mode": ("linear", ProtocolConfig(
        epochs=4, batch_size=8, lr=1e-2, schedule="step", milestones=(0.5,), milestones_in="fraction_floor",
        drop_last=True, backbone_mode="train", seed=42)),
    # everything random at once: shuffling, flips/rot90, dropout in the head, momentum, cosine schedule
    "finetune": ("finetune", ProtocolConfig(
        epochs=3, batch_size=8, lr=0.05, optimizer="sgd", schedule="cosine", warmup_epochs=1.0, weight_decay=5e-4,
        augment=True, head_dropout=0.2, seed=3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_interrupted_evaluation_resumes_bit_for_bit(tmp_path, case):
    protocol, cfg = CASES[case]
    whole, whole_state, _ = _run(protocol, cfg)
    path = tmp_path / "r.checkpoint.pt"
    with pytest.raises(Stop):
        _run(protocol, cfg, EpochCheckpoint(path, "same", interval=0), stop_after=2)
    assert torch.load(path, weights_only=True)["epoch"] == 2

    again = EpochCheckpoint(path, "same", interval=0)
    resumed, resumed_state, trained = _run(protocol, cfg, again)
    assert again.resumed_from == 2 and again.elapsed_before > 0
    assert trained == list(range(3, cfg.epochs + 1))  # only the epochs after the checkpoint ran again
    assert resumed.history == whole.history  # epochs 1-2 from the checkpoint, the rest trained again
    for split, (t, scores) in whole.predictions.items():
        assert (resumed.predictions[split][0] == t).all()
        assert (resumed.predictions[split][1] == scores).all(), f"{case}: resumed scores differ"
    # the backbone ends identical too: BatchNorm statistics (both) and fine-tuned weights
    assert all(torch.equal(whole_state[k], resumed_state[k]) for k in whole_state)


def test_a_checkpoint_of_other_settings_or_garbage_is_refused_not_mixed_in(tmp_path):
    protocol, cfg = CASES["linear, backbone in train mode"]
    path = tmp_path / "r.checkpoint.pt"
    with pytest.raises(Stop):
        _run(protocol, cfg, EpochCheckpoint(path, "settings A", interval=0), stop_after=1)
    with pytest.raises(UsageError, match="other settings") as e:
        _run(protocol, cfg, EpochCheckpoint(path, "settings B", interval=0))
    assert "--restart" in e.value.hint
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="unreadable"):
        EpochCheckpoint(path, "settings A").load()


def test_cli_eval_resumes_refuses_other_settings_and_cleans_up(shared, tmp_path, monkeypatch):
    """seco-train eval on a real EuroSAT slice: a run killed after epoch 1 (its checkpoint left behind)
    is resumed by the same command, with the report an uninterrupted run writes; other settings are
    refused with a hint; --restart discards; the checkpoint is gone once the report is written."""
    from seco_cli.train import main as train_cli

    lines = (shared / "data" / "eurosat-rgb" / "splits" / "train.txt").read_text().split()
    files = []
    for split, sl in (("train", slice(0, None, 500)), ("val", slice(1, None, 1000)), ("test", slice(2, None, 1000))):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines[sl]) + "\n")
        files += ["--split-file", f"{split}={tmp_path / f'{split}.txt'}"]
    base = ["eval", "eurosat", "--weights", "random", "--preset", "reference", "--epochs", "3", "--device", "cpu",
            "--root", str(shared / "data" / "eurosat-rgb"), "--resamples", "50", *files]
    runner = CliRunner()
    whole = tmp_path / "whole.json"
    r = runner.invoke(train_cli, [*base, "--out", str(whole)])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "whole.checkpoint.pt").exists()

    # a run stopped after its first epoch's checkpoint (as by kill -9)
    out = tmp_path / "cut.json"
    real_save = EpochCheckpoint.save

    def save_then_die(self, epoch, make_state, *, last=False):
        real_save(self, epoch, make_state, last=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "save", save_then_die)
    r = runner.invoke(train_cli, [*base, "--out", str(out)])
    assert r.exit_code != 0 and "rerun the same command to resume" in r.output
    monkeypatch.setattr(EpochCheckpoint, "save", real_save)
    ckpt = tmp_path / "cut.checkpoint.pt"
    assert ckpt.is_file() and not out.exists()

    r = runner.invoke(train_cli, [*base[:7], "4", *base[8:], "--out", str(out)])  # other settings: refused
    assert r.exit_code != 0 and "other settings" in r.output and "--restart" in r.output
    assert ckpt.is_file()

    r = runner.invoke(train_cli, [*base, "--out", str(out)])
    assert r.exit_code == 0 and "resumed after epoch 1" in r.output, r.output
    assert not ckpt.exists()
    a, b = json.loads(whole.read_text()), json.loads(out.read_text())
    assert b["resumed_after_epoch"] == 1 and a["resumed_after_epoch"] is None
    assert a["history"] == b["history"] and a["metrics"] == b["metrics"]

    # --restart discards a checkpoint and starts again
    monkeypatch.setattr(EpochCheckpoint, "save", save_then_die)
    runner.invoke(train_cli, [*base, "--out", str(tmp_path / "r.json")])
    monkeypatch.setattr(EpochCheckpoint, "save", real_save)
    assert (tmp_path / "r.checkpoint.pt").is_file()
    r = runner.invoke(train_cli, [*base, "--out", str(tmp_path / "r.json"), "--restart"])
    assert r.exit_code == 0 and "resumed" not in r.output
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == a["metrics"]
