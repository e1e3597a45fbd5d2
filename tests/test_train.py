"""seco-train run / export / stats: config, schedule, resume equivalence, torchrun on CPU, learning."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from seco_cli.train import main  # noqa: E402
from seco_data.errors import OutputError  # noqa: E402
from seco_train.config import ConfigError, RunConfig, config_from_dict, load_config  # noqa: E402
from seco_train.train import lr_at, train  # noqa: E402

TINY = {"data.size": 32, "data.batch_size": 4, "data.workers": 0, "model.queue_size": 16, "steps": 4,
        "log_every": 1, "checkpoint_every": 2, "tensorboard": False, "precision": "fp32"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards of a 40-location simulator catalog (enough locations for the queue not to be all positives)."""
    from seco_data.sample.run import sample
    from seco_data.recipe import load_recipe
    from seco_data.export.webdataset import ShardOptions, export_webdataset

    from helpers import built_once

    def build(root):
        sample(load_recipe("demo", {"n": 40, "bands": ["B02", "B03", "B04"]}), root / "cat", workers=2)
        export_webdataset(root / "cat", root / "shards", options=ShardOptions(maxcount=5, bands=("B02", "B03", "B04")))

    return built_once(tmp_path_factory, "train-shards", build) / "shards"


def _cfg(shards, **extra) -> RunConfig:
    return config_from_dict({}, {**TINY, "data.shards": str(shards), **extra})


def test_defaults_are_the_paper_and_overrides_are_checked(tmp_path):
    cfg = RunConfig()
    assert (cfg.model.backbone, cfg.model.mode, cfg.data.bands, cfg.data.batch_size) == \
        ("resnet18", "seco", ("B04", "B03", "B02"), 256)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.epochs, cfg.optim.milestones) == \
        (0.03, 0.9, 1e-4, 200.0, (120.0, 160.0))
    assert (cfg.model.queue_size, cfg.model.momentum, cfg.model.temperature, cfg.model.dim) == (16384, 0.999, 0.07, 128)
    path = tmp_path / "run.yaml"
    path.write_text("optim: {lr: 0.06}\nmodel: {backbone: resnet50}\n")
    cfg = load_config(path, {"optim.schedule": "cosine", "data.bands": "B4,B3,B2"})
    assert (cfg.optim.lr, cfg.model.backbone, cfg.optim.schedule, cfg.data.bands) == \
        (0.06, "resnet50", "cosine", ("B04", "B03", "B02"))
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        load_config(None, {"optim.lrr": 1})
    with pytest.raises(ConfigError, match="multiple of the global batch"):
        load_config(None, {"model.queue_size": 1000})
    with pytest.raises(ConfigError, match="stretch"):
        load_config(None, {"data.bands": "B08,B04"})


def test_schedule_maps_epochs_onto_steps():
    cfg = RunConfig()
    total = 1000
    assert lr_at(0, total, cfg) == pytest.approx(0.03)
    assert lr_at(599, total, cfg) == pytest.approx(0.03) and lr_at(600, total, cfg) == pytest.approx(0.003)
    assert lr_at(800, total, cfg) == pytest.approx(0.0003)
    cos = config_from_dict({}, {"optim.schedule": "cosine", "optim.warmup_epochs": 10})
    assert lr_at(0, total, cos) == pytest.approx(0.03 / 50) and lr_at(49, total, cos) == pytest.approx(0.03)
    assert lr_at(500, total, cos) == pytest.approx(0.015) and lr_at(999, total, cos) < 1e-5


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def _tiny_model(cfg):
    """SeCo with a small CNN encoder: resuming does not depend on the ResNet."""
    from seco_train.model import SeasonalContrast

    from helpers import tiny_encoder

    return SeasonalContrast(backbone=tiny_encoder(), mode=cfg.model.mode, dim=cfg.model.dim,
                            queue_size=cfg.model.queue_size, momentum=cfg.model.momentum,
                            temperature=cfg.model.temperature)


def test_resume_equals_a_straight_run(shards, tmp_path):
    cfg = _cfg(shards, **{"data.workers": 2, "data.augment_on": "device"})  # the GPU's path, on CPU
    train(cfg, tmp_path / "straight", make_model=_tiny_model)
    crashed = tmp_path / "crashed"

    def crash(p):  # dies during step 3, after the checkpoint of step 2 was written
        if p.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, crashed, progress=crash, make_model=_tiny_model)
    with pytest.raises(OutputError, match="already holds a run"):
        train(cfg, crashed, make_model=_tiny_model)
    with pytest.raises(ConfigError, match=r"other settings \(optim.lr\)"):
        train(_cfg(shards, **{"data.workers": 2, "data.augment_on": "device", "optim.lr": 0.1}), crashed, resume=True,
              make_model=_tiny_model)
    report = train(cfg, crashed, resume=True, make_model=_tiny_model)
    assert report.steps == 2 and report.total_steps == 4
    a, b = _weights(tmp_path / "straight"), _weights(crashed)
    assert a.keys() == b.keys()
    for k in a:  # model, momentum encoder and queues: bit-identical on CPU
        assert torch.equal(a[k], b[k]), k
    rows = _rows(crashed / "metrics.csv")
    straight = _rows(tmp_path / "straight" / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight]
    assert (crashed / "loss.png").stat().st_size > 1000
    assert json.loads((crashed / "ranks.json").read_text())["in_step"]
    assert torch.load(crashed / "checkpoint.pt", weights_only=False)["loader_workers"] == 2


def test_views_on_the_device_and_in_the_workers_train_alike(shards, tmp_path):
    """A/B: the same seeds through each path (data.augment_on) give the same loss and contrastive
    accuracy curves, within float rounding (the views agree within 1e-5), far inside seed noise (the
    curves of another seed); the runs record the loader workers they used, for a resume."""
    extra = {"steps": 8, "checkpoint_every": 8, "data.batch_size": 8, "model.queue_size": 32}
    curves = {}
    for name, over in {"device": {"data.augment_on": "device"}, "workers": {"data.augment_on": "workers"},
                       "other seed": {"data.augment_on": "device", "seed": 1}}.items():
        train(_cfg(shards, **extra, **over), tmp_path / name.replace(" ", "_"), make_model=_tiny_model)
        rows = _rows(tmp_path / name.replace(" ", "_") / "metrics.csv")
        assert len(rows) == 8
        curves[name] = {k: [float(r[k]) for r in rows] for k in ("loss", "acc_0", "acc_1", "acc_2")}

    def gap(a, b, k):
        return max(abs(x - y) for x, y in zip(curves[a][k], curves[b][k]))

    assert gap("device", "workers", "loss") < 1e-3 < gap("device", "other seed", "loss")
    for k in ("acc_0", "acc_1", "acc_2"):  # the same ranks almost surely: equal accuracies
        assert gap("device", "workers", k) <= 1 / 8 + 1e-9 and sum(
            x != y for x, y in zip(curves["device"][k], curves["workers"][k])) <= 1, k
    state = torch.load(tmp_path / "device" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["loader_workers"] == 0 and state["config"]["data"]["augment_on"] == "device"


def test_torchrun_two_processes_on_cpu(shards, tmp_path):
    out = tmp_path / "ddp"
    sets = [f"--set={k}={v}" for k, v in {**TINY, "steps": 3, "model.queue_size": 32}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `--gpus 2` re-launches the same command under torchrun (two processes; gloo on CPU)
    res = subprocess.run(
        [sys.executable, "-m", "seco_train", "run", str(shards), "--gpus", "2", "--out", str(out), *sets],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["in_step"] and [r["step"] for r in ranks["ranks"]] == [3, 3]
    state = _weights(out)
    ptrs = {k: int(v) for k, v in state.items() if "ptr" in k}
    # each step enqueues the keys of both ranks: 3 steps x 4 (global batch) per subspace
    assert ptrs and all(p == (3 * 4) % 32 for p in ptrs.values()), ptrs


@pytest.mark.slow
def test_short_cpu_run_learns(shards, tmp_path):
    """A short run on the simulator shards: contrastive top-1 rises well above chance (1 / (1 + K))."""
    cfg = _cfg(shards, **{"data.size": 32, "data.batch_size": 16, "model.queue_size": 64, "steps": 80,
                          "log_every": 1, "checkpoint_every": 80, "optim.lr": 0.05, "data.workers": 2})
    train(cfg, tmp_path / "learn")
    rows = _rows(tmp_path / "learn" / "metrics.csv")
    # chance: 1 positive among 1 + K (Z0) or 1 + K + 2B candidates (Z1, Z2: in-batch negatives too)
    chance = {"acc_0": 1 / (1 + 64), "acc_1": 1 / (1 + 64 + 32), "acc_2": 1 / (1 + 64 + 32)}
    mean = {k: (sum(float(r[k]) for r in rows[:10]) / 10, sum(float(r[k]) for r in rows[-20:]) / 20)
            for k in ("acc_0", "acc_1", "acc_2", "loss")}
    print("first 10 steps vs last 20 steps:", {k: (round(a, 3), round(b, 3)) for k, (a, b) in mean.items()})
    for k, c in chance.items():
        assert mean[k][1] > 3 * c, (k, mean[k], c)
    assert mean["acc_1"][1] > 2 * mean["acc_1"][0]  # the season-invariant subspace learns from ~chance
    assert mean["loss"][1] < mean["loss"][0] - 0.3


def test_cli_run_export_stats(shards, tmp_path):
    import torchvision

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["run", str(shards), "--out", str(out)] + [f"--set={k}={v}" for k, v in {**TINY, "steps": 2}.items()]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    res = runner.invoke(main, args)
    assert res.exit_code != 0 and "--resume" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["export", str(out), "--out", str(tmp_path / "r18.pth")])
    assert res.exit_code == 0, res.output
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(tmp_path / "r18.pth", weights_only=True))
    res = runner.invoke(main, ["stats", str(shards), "--out", str(tmp_path / "stats.json"), "--max-samples", "10"])
    assert res.exit_code == 0, res.output
    stats = ["stats", str(shards), "--out", str(tmp_path / "stats.json"), "--max-samples", "5"]
    res = runner.invoke(main, stats)
    assert res.exit_code == 3 and "already exists" in res.output and "--overwrite" in res.output
    res = runner.invoke(main, stats + ["--overwrite"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["run", str(shards), "--out", str(tmp_path / "x"), "--set", "model.mode=simclr"])
    assert res.exit_code == 2 and "model.mode" in res.output
