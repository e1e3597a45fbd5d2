"""What one pre-training epoch is: the reference counts every location x date as a MoCo-v2 sample
(SeasonalContrastBasic lists each date folder), so "200 epochs" of `moco` is seasons x the work of a
`seco` epoch; `epoch_unit: location` keeps one sample per location; runs from before the option resume."""

from __future__ import annotations

import pytest
import torch

from seco_data.errors import ConfigError
from seco_train.config import config_from_dict
from seco_train.model import SeasonalContrast
from seco_train.train import CHECKPOINT, seasons_per_location, total_steps, train

TINY = {"data.size": 32, "data.batch_size": 4, "data.workers": 0, "model.queue_size": 8, "log_every": 1,
        "checkpoint_every": 1, "tensorboard": False, "precision": "fp32"}


@pytest.fixture(scope="module")
def shards(demo_catalog, tmp_path_factory):
    from seco_data.export.webdataset import ShardOptions, export_webdataset

    out = tmp_path_factory.mktemp("epochs") / "shards"
    export_webdataset(demo_catalog, out, options=ShardOptions(maxcount=2, bands=("B02", "B03", "B04")))
    return out


def test_a_moco_epoch_counts_every_location_and_season(shards):
    assert seasons_per_location(str(shards)) == 4  # the demo recipe's 4 seasons
    def steps(**kw):
        return total_steps(config_from_dict({}, {"data.shards": str(shards), "data.batch_size": 4,
                                                 "model.queue_size": 8, "optim.epochs": 8, **kw}))
    assert steps(**{"model.mode": "moco"}) == (8 * 5 * 4 // 4, 20)       # 5 locations x 4 seasons per epoch
    assert steps(**{"model.mode": "seco"}) == (8 * 5 // 4, 5)             # SeCo and MoCo+TP: one per location
    assert steps(**{"model.mode": "moco_tp"}) == (10, 5)
    assert steps(**{"model.mode": "moco", "epoch_unit": "location"}) == (10, 5)
    assert steps(**{"model.mode": "moco", "samples_per_epoch": 7}) == (14, 7)
    with pytest.raises(ConfigError, match="epoch_unit"):
        steps(epoch_unit="images")


def _tiny(cfg):
    from helpers import tiny_encoder

    return SeasonalContrast(tiny_encoder(), mode=cfg.model.mode, dim=8, queue_size=8)


@pytest.mark.parametrize("mode", ["seco", "moco"])
def test_runs_from_before_epoch_unit_resume(shards, tmp_path, mode):
    cfg = config_from_dict({}, {**TINY, "data.shards": str(shards), "model.mode": mode, "steps": 2})
    out = tmp_path / mode
    train(cfg, out, make_model=_tiny)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    del state["config"]["epoch_unit"]  # as a checkpoint written before the option existed
    torch.save(state, out / CHECKPOINT)
    if mode == "moco":  # its epochs were one sample per location: resuming must say so
        with pytest.raises(ConfigError, match=r"other settings \(epoch_unit\)"):
            train(cfg, out, resume=True, make_model=_tiny)
        cfg = config_from_dict({}, {**TINY, "data.shards": str(shards), "model.mode": mode, "steps": 2,
                                    "epoch_unit": "location"})
    report = train(cfg, out, resume=True, make_model=_tiny)
    assert report.steps == 0 and report.total_steps == 2
