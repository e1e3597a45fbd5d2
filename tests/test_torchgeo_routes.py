"""torchgeo reads seco exports and trains on them: SSL4EOS12 over `export --format ssl4eo`, and the
SeCo datamodule route over `export --format seco`, each one Lightning training step, at 5 locations
(torchgeo's own lengths are the releases': 251,079 and 20,000)."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seco_data.catalog.index import CatalogIndex
from seco_data.export.seco_layout import export_seco_layout

with warnings.catch_warnings():  # torchgeo's import chain may warn (filterwarnings=error)
    warnings.simplefilter("ignore")
    import lightning
    from torchgeo.datasets import SSL4EOS12, SeasonalContrastS2

    from seco_train.torchgeo import (SeasonalContrastS2Export, SeasonalContrastS2ExportDataModule,
                                     SSL4EOS12Export, SSL4EOS12ExportDataModule)


@pytest.fixture(scope="module")
def ssl4eo(demo_catalog, tmp_path_factory):
    from seco_cli.data import main

    out = tmp_path_factory.mktemp("ssl4eo") / "ssl4eo_s12"
    r = CliRunner().invoke(main, ["export", str(demo_catalog), "--format", "ssl4eo", "--out", str(out),
                                  "--workers", "2", "--json"])
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


class OneStep(lightning.LightningModule):
    """A linear probe on the mean of each channel: one optimiser step, the loss finite."""

    def __init__(self, channels: int):
        super().__init__()
        self.head = torch.nn.Linear(channels, 1)
        self.losses: list[float] = []

    def training_step(self, batch, _):
        x = batch["image"].mean(dim=(2, 3))
        loss = self.head(x).pow(2).mean()
        self.losses.append(float(loss))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def train_one_batch(dm, channels: int) -> OneStep:
    model = OneStep(channels)
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (num_workers, logging) on a 1-step run
        trainer = lightning.Trainer(max_steps=1, limit_val_batches=0, accelerator="cpu", devices=1, logger=False,
                                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, datamodule=dm)
    assert len(model.losses) == 1 and np.isfinite(model.losses[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step changed the weights
    return model


def test_ssl4eo_export_read_by_torchgeo(ssl4eo, demo_catalog):
    out, report = ssl4eo
    assert report["split"] == "s2a" and report["locations"] == 5  # the demo is L2A, 12 bands
    assert sorted(p.name for p in (out / "s2a").iterdir()) == [f"{i:07d}" for i in range(5)]
    assert len(SSL4EOS12(root=out, split="s2a")) == 251_079  # torchgeo's, whatever was exported
    ds = SSL4EOS12Export(root=out, split="s2a", seasons=4)
    assert len(ds) == 5
    ten = [ds.bands.index(b) for b in ("B2", "B3", "B4", "B8")]
    for i, loc in enumerate(CatalogIndex(demo_catalog).locations()):
        want = []
        for p in loc.patches:
            a = next(a for a in p.data if a.resolution == 10)
            want.append(a.read()[[a.bands.index(b) for b in ("B02", "B03", "B04", "B08")]].astype(np.float32))
        sample = ds[i]
        n = len(ds.bands)
        assert sample["image"].shape == (4 * n, 264, 264) and sample["wavelength"].shape == (4 * n,)
        seen = set()
        for s in range(4):  # torchgeo draws the seasons at random: each is one of ours, all distinct
            chunk = sample["image"][s * n:(s + 1) * n].numpy()[ten]
            hits = [k for k, w in enumerate(want) if np.array_equal(chunk, w)]
            assert len(hits) == 1, (i, s)
            seen.add(hits[0])
        assert seen == {0, 1, 2, 3}
        times = sorted(int(t) for t in sample["t"])  # the scene times torchgeo parsed from the folder names
        ours = sorted(dt.datetime.fromisoformat(p.datetime.replace("Z", "+00:00")).timestamp() for p in loc.patches)
        assert all(abs(t - o) <= 128 for t, o in zip(times, ours)), (times, ours)  # float32: 128 s steps


def test_ssl4eo_datamodule_trains_one_batch(ssl4eo):
    out, _ = ssl4eo
    dm = SSL4EOS12ExportDataModule(root=out, split="s2a", seasons=2, batch_size=4)
    train_one_batch(dm, channels=2 * 12)


def test_seco_datamodule_route_trains_one_batch(demo_catalog, tmp_path):
    out = tmp_path / "seasonal_contrast_100k"
    export_seco_layout(demo_catalog, out)
    assert len(SeasonalContrastS2(root=tmp_path, version="100k")) == 20_000  # why the route is needed
    assert len(SeasonalContrastS2Export(root=tmp_path, version="100k")) == 5
    dm = SeasonalContrastS2ExportDataModule(root=tmp_path, version="100k", seasons=2, batch_size=4)
    train_one_batch(dm, channels=2 * 3)


def test_ssl4eo_needs_every_band(demo_catalog, tmp_path):
    from seco_data.bands import BANDS
    from seco_data.errors import UsageError
    from seco_data.export.ssl4eo_layout import export_ssl4eo_layout
    from seco_data.export.ssl4eo_layout.export import _split

    assert _split(set(BANDS)) == "s2c" and _split(set(BANDS) - {"B10"}) == "s2a"
    with pytest.raises(UsageError, match="needs every Sentinel-2 band"):
        _split({"B02", "B03", "B04"})
    with pytest.raises(UsageError, match="compression"):
        export_ssl4eo_layout(demo_catalog, tmp_path / "x", compress="jpeg")
