"""BigEarthNet reader on the 6 real example patches, the 43 -> 19 mapping, and mAP against scikit-learn."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seco_train.evaluate import bigearthnet as ben


@pytest.fixture(scope="module")
def example(shared) -> Path:
    return shared / "data" / "bigearthnet" / "BigEarthNet-S2-Example"


@pytest.fixture()
def layout(example, tmp_path):
    """Split CSVs and exclusion lists in tmp (ROOT's parent is read-only shared data)."""
    names = sorted(p.name for p in example.iterdir() if p.is_dir())
    assert len(names) == 6

    def write(split=None, snow=(), cloud=()):
        split = names if split is None else split
        (tmp_path / "train.csv").write_text("".join(f"{n}\n" for n in split))
        (tmp_path / "snow.csv").write_text("".join(f"{n}\n" for n in snow))
        (tmp_path / "cloud.csv").write_text("".join(f"{n}\n" for n in cloud))
        return dict(split_file=tmp_path / "train.csv", exclude=[tmp_path / "snow.csv", tmp_path / "cloud.csv"])

    return names, write


def test_mapping_is_the_19_class_nomenclature():
    assert len(ben.LABELS_43) == len(set(ben.LABELS_43)) == 43
    assert len(ben.LABELS_19) == len(set(ben.LABELS_19)) == 19
    assert set(ben.LABEL_43_TO_19) == set(ben.LABELS_43)
    targets = [k for k in ben.LABEL_43_TO_19.values() if k is not None]
    assert all(isinstance(k, int) and 0 <= k < 19 for k in targets)  # 0 or 1 target each
    assert set(targets) == set(range(19))  # all 19 reachable
    # Sumbul et al. 2021 drop exactly these 11 CORINE classes
    paper_removed = {"Road and rail networks and associated land", "Port areas", "Airports",
                     "Mineral extraction sites", "Dump sites", "Construction sites", "Green urban areas",
                     "Sport and leisure facilities", "Bare rock", "Burnt areas", "Intertidal flats"}
    assert {n for n, k in ben.LABEL_43_TO_19.items() if k is None} == paper_removed == ben.REMOVED_IN_19
    # a few merges spelled out by the paper
    assert ben.LABELS_19[ben.LABEL_43_TO_19["Rice fields"]] == "Arable land"
    assert ben.LABELS_19[ben.LABEL_43_TO_19["Olive groves"]] == "Permanent crops"
    assert ben.LABELS_19[ben.LABEL_43_TO_19["Estuaries"]] == "Marine waters"
    assert ben.LABELS_19[ben.LABEL_43_TO_19["Sparsely vegetated areas"]] == \
        "Natural grassland and sparsely vegetated areas"


def test_mapping_agrees_with_torchgeo():
    from torchgeo.datasets.bigearthnet import BigEarthNet as TG

    tg43, tg19 = TG.class_sets[43], TG.class_sets[19]
    assert sorted(tg43) == sorted(ben.LABELS_43)
    assert list(tg19) == list(ben.LABELS_19)
    tg_map = {tg43[i]: j for i, j in TG.label_converter.items()}
    assert tg_map == {n: k for n, k in ben.LABEL_43_TO_19.items() if k is not None}


def test_reads_real_patches_with_labels_and_shapes(example, layout):
    names, write = layout
    ds = ben.BigEarthNet(example, "train", bands="rgb", **write())
    assert len(ds) == 6 and ds.patches == names
    image, target = ds[0]
    assert image.dtype == target.dtype == torch.float32
    assert image.shape == (3, 128, 128) and target.shape == (19,)

    # labels checked by hand for two patches, through an independent table of the labels they carry
    by_hand = {"Non-irrigated arable land": "Arable land", "Pastures": "Pastures",
               "Coniferous forest": "Coniferous forest", "Mixed forest": "Mixed forest",
               "Transitional woodland/shrub": "Transitional woodland, shrub", "Peatbogs": "Inland wetlands",
               "Water bodies": "Inland waters"}
    for name in ("S2B_MSIL2A_20170924T93020_69_24", "S2A_MSIL2A_20170617T113321_36_85"):
        labels = json.loads((example / name / f"{name}_labels_metadata.json").read_text())["labels"]
        expected = {by_hand[lab] for lab in labels}
        _, target = ds[names.index(name)]
        assert {ben.LABELS_19[k] for k in torch.nonzero(target).flatten().tolist()} == expected
    assert ds.labels(names.index("S2B_MSIL2A_20170924T93020_69_24")) == [
        "Coniferous forest", "Mixed forest", "Transitional woodland/shrub", "Peatbogs", "Water bodies"]


def test_rgb_is_normalised_like_pretraining(example, layout):
    import rasterio

    names, write = layout
    ds = ben.BigEarthNet(example, "train", bands="rgb", size=None, **write())
    image, _ = ds[0]
    assert image.shape == (3, 120, 120)
    folder = example / names[0]
    quantiles = {"B04": (0, 129), "B03": (2, 103), "B02": (3, 88)}  # SeCo's QUANTILES in uint8 units
    imagenet = {"B04": (0.485, 0.229), "B03": (0.456, 0.224), "B02": (0.406, 0.225)}
    for c, band in enumerate(("B04", "B03", "B02")):
        with rasterio.open(folder / f"{names[0]}_{band}.tif") as src:
            dn = src.read(1).astype(np.float64)
        v8 = np.floor(np.clip(dn / 10000, 0, 1) * 255)
        lo, hi = quantiles[band]
        stretched = np.clip((v8 - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8) / 255
        mean, std = imagenet[band]
        np.testing.assert_allclose(image[c].numpy(), (stretched - mean) / std, atol=1e-5)


def test_all_bands_are_resampled_and_standardised(example, layout):
    import rasterio

    names, write = layout
    ds = ben.BigEarthNet(example, "train", bands="all", size=None, **write())
    image, _ = ds[1]
    assert image.shape == (12, 120, 120) and torch.isfinite(image).all()
    folder = example / names[1]
    for band, native in (("B02", 120), ("B05", 60), ("B01", 20)):
        with rasterio.open(folder / f"{names[1]}_{band}.tif") as src:
            dn = src.read(1).astype(np.float64)
        assert dn.shape == (native, native)
        z = (dn - ben.BAND_STATS["mean"][band]) / ben.BAND_STATS["std"][band]
        c = ben.ALL_BANDS.index(band)
        if native == 120:
            np.testing.assert_allclose(image[c].numpy(), z, atol=1e-4)
        else:  # bilinear upsampling by an integer factor keeps the block means close to the native pixels
            f = 120 // native
            blocks = image[c].numpy().reshape(native, f, native, f).mean(axis=(1, 3))
            assert np.abs(blocks - z).mean() < 0.1 * z.std() + 1e-3
    assert ben.BigEarthNet(example, "train", bands="all", **write())[1][0].shape == (12, 128, 128)


def test_exclusion_lists_and_missing_files(example, layout, tmp_path):
    names, write = layout
    ds = ben.BigEarthNet(example, "train", **write(snow=[names[0]], cloud=[names[3], "not_in_split"]))
    assert ds.patches == [names[1], names[2], names[4], names[5]] and ds.excluded == 2

    with pytest.raises(ben.DatasetNotFoundError, match="val.csv"):
        ben.BigEarthNet(example, "val", exclude=())  # looked for beside and inside ROOT: not there
    with pytest.raises(ben.DatasetNotFoundError, match="patches_with_seasonal_snow.csv"):
        ben.BigEarthNet(example, "train", split_file=tmp_path / "train.csv")
    (tmp_path / "train.csv").write_text("S2X_no_such_patch\n")
    with pytest.raises(ben.DatasetNotFoundError, match="S2X_no_such_patch"):
        ben.BigEarthNet(example, "train", split_file=tmp_path / "train.csv", exclude=())


def test_train_frac_is_seeded_and_without_replacement(example, layout):
    names, write = layout
    files = write()
    draws = [ben.BigEarthNet(example, "train", train_frac=0.5, seed=s, **files).patches for s in range(8)]
    for d in draws:
        assert len(d) == 3 == len(set(d)) and set(d) <= set(names)
        assert d == sorted(d, key=names.index)  # kept in split order
    assert ben.BigEarthNet(example, "train", train_frac=0.5, seed=3, **files).patches == draws[3]
    assert len({tuple(d) for d in draws}) > 1
    assert len(ben.BigEarthNet(example, "train", train_frac=0.01, **files)) == 1
    with pytest.raises(ben.UsageError):
        ben.BigEarthNet(example, "test", train_frac=0.5, **files)


def test_the_evaluator_runs_bigearthnet_from_the_registry(example, tmp_path):
    """Registry entry -> evaluator -> report, on the 6 real patches (kNN, random weights)."""
    from seco_train.evaluate.evaluator import EvalConfig, evaluate
    from seco_train.evaluate.registry import get

    bench = get("bigearthnet")
    assert (bench.task, bench.num_classes, bench.metric) == ("multilabel", 19, "map_micro")
    names = sorted(p.name for p in example.iterdir() if p.is_dir())
    files = {}
    for split, part in (("train", names[:4]), ("val", names[4:5]), ("test", names[4:])):
        files[split] = tmp_path / f"{split}.csv"
        files[split].write_text("".join(f"{n}\n" for n in part))
    (tmp_path / "none.csv").write_text("")
    cfg = EvalConfig(benchmark="bigearthnet", weights="random", protocol="knn", root=str(example), k=3, size=64,
                     split_files=tuple((s, str(f)) for s, f in files.items()),
                     dataset_options=(("exclude", (str(tmp_path / "none.csv"),)),))
    report = evaluate(cfg)
    test = report["metrics"]["test"]
    assert report["splits"]["test"]["n"] == 2 and report["weights"]["in_channels"] == 3
    assert 0.0 <= test["map_micro"] <= 1.0 and 0.0 <= test["map_macro"] <= 1.0  # the values: test_evaluate
    targets = bench.dataset(str(example), "test", split_file=files["test"], size=64,
                            exclude=(str(tmp_path / "none.csv"),)).targets
    # targets come from the label JSONs without reading images, and agree with the items
    ds = bench.dataset(str(example), "test", split_file=files["test"], size=64, exclude=(str(tmp_path / "none.csv"),))
    assert targets.shape == (2, 19) and all((ds[i][1].numpy() == targets[i]).all() for i in range(2))


def test_cli_names_the_missing_exclusion_list(example, tmp_path):
    from click.testing import CliRunner

    from seco_cli.train import main

    (tmp_path / "train.csv").write_text("x\n")
    res = CliRunner().invoke(main, ["eval", "bigearthnet", "--weights", "random", "--root", str(example),
                                    "--protocol", "knn", "--split-file", f"train={tmp_path / 'train.csv'}",
                                    "--out", str(tmp_path / "r.json")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "csv" in res.output and res.output.count("Error:") == 1


@pytest.mark.parametrize("protocol, bands", [("linear", "all"), ("finetune", "rgb")])
def test_protocols_on_real_patches_match_sklearn(example, tmp_path, protocol, bands):
    """linear on all 12 bands with pre-training statistics (the ``stats`` stretch), finetune on RGB: on the
    6 real patches, the recorded mAPs equal scikit-learn's on the protocol's own predictions."""
    import rasterio
    from sklearn.metrics import average_precision_score

    from seco_train.evaluate import metrics, protocols
    from seco_train.evaluate.protocols import DEFAULTS
    from seco_train.model import build_backbone

    names = sorted(p.name for p in example.iterdir() if p.is_dir())
    stats = {b: {"mean": 0.05 + 0.01 * i, "std": 0.02 + 0.005 * i} for i, b in enumerate(ben.BAND_SETS["all"])}
    kw = dict(bands=bands, size=64, exclude=(), stats=stats if bands == "all" else None)
    train = ben.BigEarthNetBenchmark(example, "train", split_file=_names_file(tmp_path / "tr.csv", names[:4]), **kw)
    test = ben.BigEarthNetBenchmark(example, "test", split_file=_names_file(tmp_path / "te.csv", names[4:]), **kw)
    if bands == "all":  # the stats stretch: (DN * 1e-4 - mean) / std, band by band (B02: a 10 m band, native size)
        folder = example / names[4]
        with rasterio.open(folder / f"{names[4]}_B02.tif") as src:
            dn = src.read(1).astype(np.float32)
        got = ben.load_patch(folder, ben.BAND_SETS["all"], None, stats)[ben.BAND_SETS["all"].index("B02")]
        want = (dn * 1e-4 - stats["B02"]["mean"]) / stats["B02"]["std"]
        assert np.allclose(got.numpy(), want, atol=1e-5)
    torch.manual_seed(0)
    backbone, _ = build_backbone("resnet18", in_channels=train.in_channels)
    cfg = DEFAULTS[protocol].__class__(**{**DEFAULTS[protocol].__dict__, "epochs": 2, "batch_size": 2,
                                          "eval_batch_size": 4})
    protocols.clear_feature_cache()
    res = getattr(protocols, protocol)(backbone, train, {"test": test}, task="multilabel", num_classes=19, config=cfg)
    targets, scores = res.predictions["test"]
    assert targets.shape == (2, 19) and scores.shape == (2, 19) and np.isfinite(scores).all()
    summary = metrics.summarise("multilabel", targets, scores, list(ben.LABELS_19))
    assert summary["map_micro"] == pytest.approx(average_precision_score(targets.ravel(), scores.ravel()))
    present = targets.sum(0) > 0
    assert summary["map_macro"] == pytest.approx(
        average_precision_score(targets[:, present], scores[:, present], average="macro"))
    if protocol == "linear":
        assert res.frozen_check["unchanged"]


def _names_file(path: Path, names: list[str]) -> Path:
    path.write_text("".join(f"{n}\n" for n in names))
    return path


def test_reference_preset_through_the_evaluator(example, tmp_path):
    """--preset reference on the real patches: the reference's {split}.txt lists, its reader, a train subset
    drawn with replacement from seed 42, Dropout(0.2) + Linear, val scored; intervals of both mAPs."""
    from seco_train.evaluate.evaluator import EvalConfig, evaluate

    names = sorted(p.name for p in example.iterdir() if p.is_dir())
    for split, part in (("train", names), ("val", names[:3]), ("test", names[3:])):
        _names_file(tmp_path / f"{split}.txt", part)
    for name in ben.EXCLUSION_FILES:
        _names_file(tmp_path / name, [])
    (tmp_path / "BigEarthNet-v1.0").symlink_to(example)
    cfg = EvalConfig("bigearthnet", weights="random", root=str(tmp_path / "BigEarthNet-v1.0"), preset="reference",
                     epochs=2, batch_size=2, train_frac=0.5, resamples=100)
    report = evaluate(cfg)
    assert report["headline_split"] == "val" and report["splits"]["val"]["files"][0]["path"].endswith("val.txt")
    assert report["splits"]["train"]["n_used"] == 3 and report["train_subset"] == "with_replacement"
    assert (report["config"]["head_dropout"], report["config"]["backbone_mode"], report["seed"]) == (0.2, "eval", 42)
    val = report["metrics"]["val"]
    for metric in ("map_micro", "map_macro"):
        lo, hi = val["ci95"][metric]
        assert lo <= val[metric] <= hi
    assert val["reference_batch_mean"]["batch"] == 2  # --batch-size also sets the reference's validation batch
    from seco_data.errors import UsageError

    with pytest.raises(UsageError, match="RGB only"):
        evaluate(EvalConfig("bigearthnet", weights="random", root=str(tmp_path / "BigEarthNet-v1.0"),
                            preset="reference", epochs=1, dataset_options=(("bands", "all"),)))
