"""``seco-train export``: backbone weights plus what it takes to use them, as a model card and a STAC item.

Beside ``OUT`` (``<stem>.pth``, torchvision ResNet weights), :func:`export_model` writes:

- ``<stem>.item.json``: a STAC 1.1 Item with the Machine Learning Model extension (MLM v1.5.2) and the
  file extension. ``mlm:input`` names the bands in channel order, the input shape and the
  pre-processing; ``mlm:output`` the pooled features; ``mlm:hyperparameters`` the pre-training config.
  Beyond MLM: ``seco:transform`` (the exact input transform, what ``load_backbone(...,
  with_transform=True)`` rebuilds), ``seco:backbone``, ``seco:pretraining`` (the shards' fingerprint:
  sha256 over the sha256 of every shard trained on, their manifests, the catalog and the dataset
  recipe) and ``seco:evaluations`` (each report's headline with its 95 % interval). Geometry and time
  span are the pre-training catalog's extent when it can be read. Assets: the weights (role
  ``mlm:model``, ``mlm:artifact_type: torch.save``, size and sha256), the card, the evaluation reports.
- ``<stem>.md``: the model card: how to load it (torchvision, timm, ``load_backbone``), the inputs,
  the pre-training data and recipe, the evaluations with their intervals.
- ``<stem>-eval/``: copies of the run's evaluation reports (``RUN/eval/*.json`` and their predictions).

The item validates offline against the MLM schema kept in this repository (``seco_train/schemas/``, laid
out as its URL, with the classification and processing schemas it references) together with the core
STAC schemas of a folder such as ``../shared/stac-schemas`` (:func:`validate_item`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

from seco_data.errors import OutputError, UsageError
from seco_data.outputs import sha256_file, write_atomic, write_json

from .transform import BackboneTransform

log = logging.getLogger(__name__)

MLM = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
STAC_VERSION = "1.1.0"
#: MLM schemas kept in the repository (URL = path): mlm v1.5.2 and what it references beyond core STAC
SCHEMAS = Path(__file__).resolve().parent / "schemas"
ARCHITECTURES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
                 "resnet101": "ResNet-101", "resnet152": "ResNet-152"}


@dataclass(frozen=True)
class ExportResult:
    weights: Path
    item: Path | None = None
    card: Path | None = None
    reports: list[Path] = field(default_factory=list)


def sidecars(weights: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(item, card, evaluation folder) written beside ``weights``."""
    from .weights import item_path

    w = Path(weights)
    return item_path(w), w.with_name(w.stem + ".md"), w.with_name(w.stem + "-eval")


def export_model(run: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                 schemas: str | os.PathLike | None = None) -> ExportResult:
    """Export RUN's query backbone to ``out`` with its model card and STAC item (module docstring).

    ``run``: a run folder (its checkpoint, config and ``eval/`` reports) or a checkpoint file (any format
    ``load_backbone`` reads: the card is written when the file says how its inputs were prepared, i.e. a
    training checkpoint or an official SeCo one). ``schemas``: a folder of core STAC schemas; when given,
    the item is validated before anything is written.
    """
    from .train import CHECKPOINT
    from .weights import _backbone_weights, _infer_arch, _is_official_seco, _read, export_backbone

    run = Path(run)
    ckpt = run / CHECKPOINT if run.is_dir() else run
    out = Path(out)
    item_file, card_file, eval_dir = sidecars(out)
    if not overwrite:
        taken = [p for p in (out, item_file, card_file, eval_dir) if p.exists()]
        if taken:
            raise OutputError(f"{taken[0]} already exists", hint="pass --overwrite or choose another --out")
    obj = _read(ckpt)
    state = _backbone_weights(obj, str(ckpt))
    name, in_channels = _infer_arch(state)
    config = dict(obj["config"]) if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else None
    transform = None
    if config is not None:
        transform = BackboneTransform.from_run_config(config)
    elif _is_official_seco(obj) and in_channels == 3:
        transform = BackboneTransform.seco_rgb()
    reports = _reports(run / "eval") if run.is_dir() else []
    pretraining = _pretraining(config, obj) if config is not None else None

    export_backbone(ckpt, out, overwrite=overwrite)
    if transform is None:
        log.warning("%s does not say how its inputs were prepared: weights exported without a model card", ckpt)
        return ExportResult(out)
    copied = _copy_reports(reports, eval_dir)
    item = build_item(out, name, in_channels, transform, config, pretraining, copied, card_file)
    if schemas is not None:
        problems = list(validate_item(item, schemas))
        if problems:
            raise UsageError(f"the model card's STAC item does not validate: {problems[0]}",
                             hint="this is a bug in seco-train export; rerun with -vv and report it")
    write_atomic(card_file, model_card(item, copied))
    item["assets"]["model-card"].update(_file_fields(card_file))
    write_json(item_file, item)
    log.info("model card %s, STAC item %s", card_file, item_file)
    return ExportResult(out, item_file, card_file, [p for p, _ in copied])


# -- gathering -----------------------------------------------------------------------------------------------

def _reports(folder: Path) -> list[tuple[Path, dict]]:
    from .evaluate.report import read_report

    found = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append((p, read_report(p)))
        except UsageError as e:
            log.warning("not an evaluation report, left out of the model card: %s (%s)", p, e)
    return found


def _copy_reports(reports: list[tuple[Path, dict]], folder: Path) -> list[tuple[Path, dict]]:
    """Copy each report (and its predictions file) into ``folder``; returns the copies."""
    out = []
    for path, report in reports:
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / path.name
        write_atomic(dest, path.read_bytes())
        pred = (report.get("predictions") or {}).get("file")
        if pred and (path.parent / pred).is_file():
            write_atomic(folder / pred, (path.parent / pred).read_bytes())
        out.append((dest, report))
    return out


def _pretraining(config: dict, obj: dict) -> dict:
    """What the backbone was trained on: the shards' fingerprint, manifests, catalog and recipe."""
    from seco_data.catalog import layout
    from seco_data.errors import ShardError
    from seco_data.export.reader import expand_urls
    from seco_data.export.webdataset.export import MANIFEST

    shards = (config.get("data") or {}).get("shards", "")
    info = {"shards": shards, "steps": obj.get("step"), "software": obj.get("software")}
    try:
        urls = expand_urls(shards)
    except (ShardError, OSError, ValueError) as e:
        return {**info, "fingerprint": None, "note": f"shards not readable at export time ({e})"}
    manifests, digests, samples, recipe, catalogs, extents = [], {}, 0, None, [], []
    for folder in sorted({Path(u).parent for u in urls if "://" not in u}):
        path = folder / MANIFEST
        if not path.is_file():
            continue
        m = json.loads(path.read_text("utf-8"))
        manifests.append({"path": str(path.resolve()), "sha256": sha256_file(path), "samples": m.get("samples")})
        digests.update({str((folder / s["url"]).resolve()): s["sha256"] for s in m.get("shardlist", [])})
        samples += int(m.get("samples") or 0)
        recipe = recipe or m.get("recipe")
        cat = m.get("catalog") or {}
        if cat:
            catalogs.append({k: cat.get(k) for k in ("path", "collection", "items_sha256")})
            coll = Path(cat.get("path", "")) / layout.COLLECTION
            if coll.is_file():
                extents.append(json.loads(coll.read_text("utf-8")).get("extent") or {})
    used = [str(Path(u).resolve()) for u in urls if "://" not in u]
    known = [digests[u] for u in used if u in digests]
    fingerprint = None
    if used and len(known) == len(used):
        fingerprint = hashlib.sha256("\n".join(sorted(known)).encode()).hexdigest()
    return {**info, "fingerprint": fingerprint,
            "fingerprint_method": "sha256 of the sorted sha256 digests (shards.json) of every shard trained on",
            "shard_count": len(urls), "samples": samples, "manifests": manifests, "catalogs": catalogs,
            "recipe": recipe, "extent": _union_extent(extents)}


def _union_extent(extents: list[dict]) -> dict | None:
    boxes = [b for e in extents for b in ((e.get("spatial") or {}).get("bbox") or [])[:1] if b and len(b) == 4]
    times = [t for e in extents for t in ((e.get("temporal") or {}).get("interval") or [])[:1] if t]
    if not boxes and not times:
        return None
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)] \
        if boxes else None
    starts, ends = [t[0] for t in times if t[0]], [t[1] for t in times if t[1]]
    return {"bbox": bbox, "start": min(starts) if starts else None, "end": max(ends) if ends else None}


# -- the STAC item ---------------------------------------------------------------------------------------------

def _file_fields(path: Path) -> dict:
    return {"file:size": path.stat().st_size, "file:checksum": "1220" + sha256_file(path)}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif v is not None:
            out[key] = v
    return out


def evaluation_summary(report: dict, href: str) -> dict:
    """One report's headline as the item and card record it."""
    from .evaluate.report import headline_split

    split = headline_split(report)
    m = report["metrics"].get(split, {})
    metric = report.get("metric", "top1")
    return {"benchmark": report["benchmark"], "protocol": report["protocol"], "preset": report.get("preset", "default"),
            "split": split, "metric": metric, "value": m.get(metric), "ci95": (m.get("ci95") or {}).get(metric),
            "n": m.get("n") or report.get("splits", {}).get(split, {}).get("n"), "seed": report.get("seed"),
            "report": href}


def build_item(weights: Path, name: str, in_channels: int, transform: BackboneTransform, config: dict | None,
               pretraining: dict | None, reports: list[tuple[Path, dict]], card: Path) -> dict:
    """The STAC item with MLM (module docstring)."""
    import torch

    from seco_data.bands import BANDS

    from .model import build_backbone

    net, dim = build_backbone(name, in_channels)
    arch = ARCHITECTURES.get(name, name)
    stem = weights.stem
    extent = (pretraining or {}).get("extent") or {}
    bbox = extent.get("bbox")
    props = {
        "title": f"{arch} backbone {stem}",
        "description": "Pooled features of a backbone pre-trained with seco (Seasonal Contrast and its MoCo "
                       "baselines); load it with seco_train.weights.load_backbone(item, with_transform=True).",
        "mlm:name": _mlm_name(f"seco {name} {stem}"),
        "mlm:architecture": arch,
        "mlm:tasks": ["scene-classification", "similarity-search"],
        "mlm:framework": "PyTorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": True,
        "mlm:pretrained_source": _pretrained_source(config, pretraining),
        "mlm:total_parameters": sum(p.numel() for p in net.parameters()),
        "mlm:batch_size_suggestion": 256,
        "mlm:input": [{
            "name": "Sentinel-2 " + " ".join(transform.bands),
            "bands": list(transform.bands),
            "input": {"shape": [-1, len(transform.bands), transform.size, transform.size],
                      "dim_order": ["batch", "bands", "height", "width"], "data_type": "float32"},
            "description": transform.describe(),
            "value_scaling": ([{"type": "z-score", "mean": m / transform.scale, "stddev": s / transform.scale}
                               for m, s in zip(transform.mean, transform.std)] if transform.stretch == "stats" else None),
            "resize_type": None,
            "pre_processing_function": {"format": "python",
                                        "expression": "seco_train.weights:load_backbone(item, with_transform=True)[1]"},
        }],
        "mlm:output": [{
            "name": "features", "tasks": ["similarity-search"],
            "result": {"shape": [-1, dim], "dim_order": ["batch", "embedding"], "data_type": "float32"},
            "description": "global-average-pooled features of the last stage (torchvision fc = Identity)",
        }],
        # STAC 1.1 bands: MLM reads them from the properties; the core schema allows them there only when an
        # asset lists bands too, so the weights asset repeats them
        "bands": [{"name": b, "description": BANDS[b].description} for b in transform.bands],
        "seco:backbone": {"name": name, "in_channels": in_channels, "feature_dim": dim, "layout": "torchvision"},
        "seco:transform": transform.to_dict(),
        "seco:pretraining": {**(pretraining or {}), "config": config},
        "seco:evaluations": [evaluation_summary(r, os.path.relpath(p, weights.parent)) for p, r in reports],
    }
    if config:
        props["mlm:hyperparameters"] = {k.replace("/", "."): v for k, v in _flatten(config).items()}
    start, end = extent.get("start"), extent.get("end")
    if start and end:
        props.update(datetime=None, start_datetime=start, end_datetime=end)
    else:
        props["datetime"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assets = {
        "weights": {"href": weights.name, "type": "application/octet-stream; application=pytorch",
                    "title": f"{arch} weights (torchvision state dict, no fc)", "roles": ["mlm:model", "mlm:weights", "data"],
                    "mlm:artifact_type": "torch.save", "bands": props["bands"], **_file_fields(weights)},
        "model-card": {"href": card.name, "type": "text/markdown", "title": "model card", "roles": ["metadata"]},
    }
    for p, r in reports:
        key = f"eval-{p.stem}"
        assets[key] = {"href": os.path.relpath(p, weights.parent), "type": "application/json",
                       "title": f"evaluation: {r['benchmark']} {r['protocol']} ({r.get('preset', 'default')} preset)",
                       "roles": ["metadata"], **_file_fields(p)}
    item = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [MLM, FILE], "id": stem,
            "geometry": None, "properties": props, "links": [], "assets": assets}
    if bbox:
        w, s, e, n = bbox
        item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        item["bbox"] = bbox
    return item


def _mlm_name(text: str) -> str:
    import re

    name = re.sub(r"[^a-zA-Z0-9_.\-\s]", "-", text).strip(" -_.")
    return name if name[:1].isalpha() else f"seco {name}"


def _pretrained_source(config: dict | None, pretraining: dict | None) -> str:
    if not config:
        return "SeCo (official release)"
    mode = (config.get("model") or {}).get("mode", "seco")
    fp = (pretraining or {}).get("fingerprint")
    recipe = ((pretraining or {}).get("recipe") or {}).get("name")
    return f"seco pre-training ({mode}) on {recipe or (pretraining or {}).get('shards')}" + (f", shards {fp[:16]}" if fp else "")


# -- the card ------------------------------------------------------------------------------------------------

def model_card(item: dict, reports: list[tuple[Path, dict]]) -> str:
    """The markdown model card of ``item``."""
    from .evaluate.report import markdown_table

    p = item["properties"]
    t = BackboneTransform.from_dict(p["seco:transform"])
    bb = p["seco:backbone"]
    pre = p.get("seco:pretraining") or {}
    cfg = pre.get("config") or {}
    weights = item["assets"]["weights"]
    lines = [f"# {p['title']}", "", p["description"], "",
             "## Files", "",
             f"- `{weights['href']}`: {weights['title']}, {weights['file:size']:,} bytes, sha256 "
             f"`{weights['file:checksum'][4:]}`",
             f"- `{item['id']}.item.json`: STAC item (MLM extension) with everything below, machine-readable", ""]
    lines += ["## Use it", "", "```python",
              "from seco_train.weights import load_backbone",
              f"net, transform = load_backbone('{item['id']}.item.json', with_transform=True)",
              f"x = transform(dn)          # digital numbers of {', '.join(t.bands)}, (C, H, W) or (B, C, H, W)",
              "features = net.eval()(x if x.dim() == 4 else x[None])   # (B, " + str(bb["feature_dim"]) + ")",
              "```", "",
              "Plain torchvision or timm (the state dict is torchvision's ResNet layout without `fc`):", "",
              "```python", "import torch, torchvision, timm",
              f"net = torchvision.models.{bb['name']}(); net.fc = torch.nn.Identity()",
              f"net.load_state_dict(torch.load('{weights['href']}'))",
              f"net = timm.create_model('{bb['name']}', num_classes=0"
              + (f", in_chans={bb['in_channels']}" if bb["in_channels"] != 3 else "") + ")",
              f"net.load_state_dict(torch.load('{weights['href']}'))", "```", ""]
    if bb["in_channels"] != 3:
        lines += [f"(torchvision: replace `conv1` by a {bb['in_channels']}-channel `Conv2d(…, 64, 7, 2, 3, bias=False)` "
                  "first.)", ""]
    lines += ["## Inputs", "", f"- architecture: {p['mlm:architecture']} ({bb['in_channels']} input channels, "
              f"{bb['feature_dim']}-d pooled features, {p['mlm:total_parameters']:,} parameters)",
              f"- transform: {t.describe()}"]
    if t.stretch == "seco":
        lines += ["- 8-bit RGB renderings already in those units (EuroSAT's JPEGs): `transform.rgb8(pixels)` "
                  "(x / 255, then mean / std)"]
    lines += ["", "## Pre-training", ""]
    if cfg:
        data, model, optim = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("optim") or {}
        lines += [f"- method: `{model.get('mode')}`, {model.get('backbone')}, queue {model.get('queue_size')}, "
                  f"momentum {model.get('momentum')}, temperature {model.get('temperature')}",
                  f"- optimisation: SGD lr {optim.get('lr')}, momentum {optim.get('momentum')}, weight decay "
                  f"{optim.get('weight_decay')}, {optim.get('schedule')} schedule, batch {data.get('batch_size')}, "
                  + (f"{cfg['steps']} steps" if cfg.get("steps") else f"{optim.get('epochs')} epochs")
                  + f", {data.get('size')} px crops, "
                  f"seed {cfg.get('seed')}; trained {pre.get('steps')} steps",
                  f"- data: `{pre.get('shards')}`: {pre.get('shard_count', '?')} shards, {pre.get('samples', '?')} "
                  f"locations; fingerprint `{pre.get('fingerprint')}` ({pre.get('fingerprint_method', 'unknown')})"]
        for c in pre.get("catalogs") or []:
            lines.append(f"- catalog: `{c.get('path')}` (collection {c.get('collection')}, items.parquet sha256 "
                         f"`{c.get('items_sha256')}`)")
        recipe = pre.get("recipe") or {}
        if recipe:
            lines.append(f"- recipe: `{recipe.get('name')}`: {recipe.get('description', '').strip()}")
        lines.append("- full config: `mlm:hyperparameters` in the item; recipe: `seco:pretraining.recipe`")
    else:
        lines.append("- the official SeCo release (no training config in the checkpoint)")
    lines += ["", "## Evaluations", ""]
    if reports:
        lines += ["Headline metrics with 95 % bootstrap intervals (`seco-train report`); reports in "
                  f"`{item['id']}-eval/`.", "", markdown_table([(str(Path(h).name), r) for h, r in reports]).rstrip()]
        notes = sorted({n for _, r in reports for n in r.get("split_notes", [])})
        notes += sorted({m.get("split_note") for _, r in reports for m in r["metrics"].values()
                         if isinstance(m, dict) and m.get("split_note")})
        lines += [""] + [f"- {n}" for n in notes]
    else:
        lines.append("None yet: `seco-train eval BENCHMARK --weights RUN` writes reports into `RUN/eval/`, which "
                     "the next export picks up.")
    return "\n".join(lines).rstrip() + "\n"


# -- validation ----------------------------------------------------------------------------------------------

def validate_item(item: dict, schemas: str | os.PathLike):
    """Error lines of ``item`` against core STAC (from ``schemas``) and its extensions (the repository's MLM
    schemas first, then ``schemas``); offline: an unknown schema URL is an error."""
    from seco_data.catalog.validate import SchemaValidator

    class _Validator(SchemaValidator):
        def __init__(self, roots: list[Path]):
            super().__init__(roots[-1])
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT7

            def retrieve(uri: str):
                parts = urlsplit(urldefrag(uri)[0])
                for root in roots:
                    path = root / parts.netloc / parts.path.lstrip("/")
                    if path.is_file():
                        return Resource.from_contents(json.loads(path.read_text("utf-8")), default_specification=DRAFT7)
                raise LookupError(f"schema not stored locally: {uri}")

            self._retrieve = retrieve
            self.registry = Registry(retrieve=retrieve)

    yield from _Validator([SCHEMAS, Path(schemas)]).errors(item)
