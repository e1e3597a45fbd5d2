"""Backbone weights in and out: our checkpoints, exported backbones, official SeCo, torchgeo and timm.

Every format is reduced to a torchvision ResNet state dict (``conv1``, ``bn1``, ``layer1``-``layer4``,
no ``fc``) and loaded strictly into ``build_backbone(name, in_channels)``.

``load_backbone(..., with_transform=True)`` also returns the input transform the weights were trained
with (:class:`seco_train.transform.BackboneTransform`): from a model card's STAC item (``seco-train
export`` writes ``<stem>.item.json`` beside the weights; pass either file), from a training checkpoint's
config, or SeCo's RGB transform for an official SeCo checkpoint; ``None`` when the file does not say.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import types
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from seco_data.errors import OutputError, UsageError
from seco_data.outputs import atomic_file

from .model import SeasonalContrast, build_backbone

log = logging.getLogger(__name__)

# official SeCo: encoder_q = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
# prefixes of momentum / teacher copies: used only when no other backbone is in the file
_KEY_COPY = {"k", "key", "momentum", "teacher", "target", "ema"}
# (blocks per stage, bottleneck) -> torchvision name
_ARCHS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}
_FORMATS = ("a training checkpoint, an exported backbone, an official SeCo .ckpt, "
            "or a torchgeo/timm ResNet state dict")


def backbone_state_dict(model: SeasonalContrast) -> dict[str, Tensor]:
    """The query backbone's weights in torchvision ResNet layout (no ``fc``), copied to the CPU."""
    while True:  # unwrap DistributedDataParallel / torch.compile
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}


#: the STAC item ``seco-train export`` writes beside weights ``<stem>.pth``
ITEM_SUFFIX = ".item.json"


def item_path(weights: str | os.PathLike) -> Path:
    """The model card's STAC item beside exported weights: ``<stem>.item.json``."""
    w = Path(weights)
    return w.with_name(w.stem + ITEM_SUFFIX)


def load_backbone(source: str | os.PathLike | Mapping, name: str | None = None, in_channels: int | None = None, *,
                  with_transform: bool = False):
    """A torchvision ResNet (``fc = Identity``) with weights from ``source``, or freshly initialised
    when ``source == "random"``; with ``with_transform``, ``(net, transform)`` (module docstring).

    ``source`` is a path to: (a) a training checkpoint (``{"model": SeasonalContrast state dict,
    "config": ...}``); (b) an exported backbone (``backbone_state_dict``); (c) an official SeCo
    Lightning checkpoint (``state_dict`` with ``encoder_q.<i>.*``, ``encoder_q`` an ``nn.Sequential``
    over the ResNet children); (d) a torchgeo / timm ResNet state dict, possibly under a prefix such as
    ``backbone.`` or ``model.`` (``fc`` dropped); (e) the STAC item of a model card (its ``mlm:model``
    asset is loaded). An already loaded state dict is accepted too. ``name`` and ``in_channels`` default
    to the model card's when there is one, else resnet18 with 3 channels.
    Raises ``UsageError`` naming the file when no ResNet is found or the keys/shapes do not match.
    """
    from .transform import BackboneTransform

    if isinstance(source, str) and source == "random":
        net = build_backbone(name or "resnet18", in_channels or 3)[0]
        return (net, None) if with_transform else net
    card = None
    if not isinstance(source, Mapping):
        path = Path(source)
        if path.name.endswith(".json"):
            card, source = _read_item(path), _weights_of_item(path)
        elif item_path(path).is_file():
            card = _read_item(item_path(path))
    if card is not None:
        arch = card["properties"].get("seco:backbone", {})
        name, in_channels = name or arch.get("name"), in_channels or arch.get("in_channels")
    name, in_channels = name or "resnet18", in_channels or 3
    where = "state dict" if isinstance(source, Mapping) else str(source)
    obj = source if isinstance(source, Mapping) else _read(Path(source))
    state = _backbone_weights(obj, where)
    net = build_backbone(name, in_channels)[0]
    _load_strict(net, state, where, name, in_channels)
    log.info("loaded %s backbone (%d input channels) from %s", name, in_channels, where)
    if not with_transform:
        return net
    transform = None
    if card is not None and card["properties"].get("seco:transform"):
        transform = BackboneTransform.from_dict(card["properties"]["seco:transform"])
    elif isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) and "model" in obj:
        transform = BackboneTransform.from_run_config(dict(obj["config"]))
    elif _is_official_seco(obj) and in_channels == 3:
        transform = BackboneTransform.seco_rgb()
    if transform is None:
        log.warning("%s does not say how its inputs were prepared: no transform", where)
    return net, transform


def _is_official_seco(obj: object) -> bool:
    state = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return isinstance(state, Mapping) and any(str(k).startswith("encoder_q.4.0.") for k in state)


def _read_item(path: Path) -> dict:
    import json

    try:
        item = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"model card item {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the model card item {path} ({e})") from None
    if not isinstance(item, dict) or item.get("type") != "Feature" or "properties" not in item:
        raise UsageError(f"{path} is not a STAC item", hint="pass the <stem>.item.json that `seco-train export` wrote")
    return item


def _weights_of_item(path: Path) -> Path:
    item = _read_item(path)
    for asset in item.get("assets", {}).values():
        if "mlm:model" in asset.get("roles", ()):
            return (path.parent / asset["href"]).resolve() if "://" not in asset["href"] else Path(asset["href"])
    raise UsageError(f"{path} has no asset with the role mlm:model", hint="pass the weights file itself")


def export_backbone(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike, *,
                    overwrite: bool = False) -> Path:
    """Write the backbone of ``checkpoint_path`` (any format ``load_backbone`` reads) as a torchvision
    state dict, atomically (temporary file, fsync, ``os.replace``); the architecture is read from the
    weights. Refuses to replace ``out_path`` unless ``overwrite``."""
    src, out = Path(checkpoint_path), Path(out_path)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists", hint="choose another path or pass overwrite=True")
    state = _backbone_weights(_read(src), str(src))
    name, in_channels = _infer_arch(state)
    if name is None:
        raise UsageError(f"{src}: the backbone is not a torchvision ResNet-18/34/50/101/152")
    net = build_backbone(name, in_channels)[0]
    _load_strict(net, state, str(src), name, in_channels)
    weights = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f:
        torch.save(weights, f)
    log.info("exported %s backbone (%d input channels) from %s to %s", name, in_channels, src, out)
    return out


# -- reading ---------------------------------------------------------------------------------------------

def _read(path: Path) -> object:
    """``torch.load`` without running code from the file.

    Tensors-only files load with ``weights_only=True``; checkpoints that also hold other objects
    (Lightning hyper-parameters and callbacks, NumPy RNG state) load with every non-torch global
    replaced by an inert placeholder, so nothing from the file is imported or called.
    """
    if not path.is_file():
        raise UsageError(f"backbone weights {path}: no such file", hint=f"pass {_FORMATS}, or 'random'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # objects beyond tensors: retry with placeholders below
    except Exception as e:  # noqa: BLE001 - not a torch file at all
        raise _unreadable(path, e) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_INERT_PICKLE)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file
        raise _unreadable(path, e) from None


def _unreadable(path: Path, e: Exception) -> UsageError:
    why = " ".join(str(e).split())[:160]
    return UsageError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {why})",
                      hint=f"pass {_FORMATS}")


class _Inert(dict):
    """Stands in for any class or function a checkpoint names outside torch's safe list."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        self.state = state

    def __hash__(self):
        return id(self)


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = _get_allowed_globals()
        return allowed.get(f"{module}.{name}", _Inert)


_INERT_PICKLE = types.ModuleType("seco_inert_pickle")
_INERT_PICKLE.Unpickler = _InertUnpickler
_INERT_PICKLE.load = lambda f, **kw: _InertUnpickler(f, **kw).load()
_INERT_PICKLE.__name__ = "seco_inert_pickle"


# -- finding the backbone ----------------------------------------------------------------------------------

def _backbone_weights(obj: object, where: str) -> dict[str, Tensor]:
    """The backbone of any supported container as a torchvision state dict (``fc`` dropped)."""
    state = obj
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):  # ours / Lightning (official SeCo, torchgeo)
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping):
        raise UsageError(f"{where}: expected a dict of weights, found {type(state).__name__}",
                         hint=f"pass {_FORMATS}")
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, Tensor)}
    found = _find_prefix(state)
    if found is None:
        few = ", ".join(list(state)[:5]) or "no tensors"
        raise UsageError(f"{where}: no ResNet backbone found: expected keys 'conv1.weight' and "
                         f"'layer1.0.conv1.weight' (or SeCo's 'encoder_q.0.weight', 'encoder_q.4.0.conv1.weight'), "
                         f"possibly under a prefix; found {few}", hint=f"pass {_FORMATS}")
    prefix, sequential = found
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if sequential:
            head, _, tail = rest.partition(".")
            rest = f"{_SEQUENTIAL[head]}.{tail}" if head in _SEQUENTIAL else rest
        if not rest.startswith("fc."):
            out[rest] = value
    log.debug("%s: backbone under prefix %r (%s layout)", where, prefix, "SeCo" if sequential else "torchvision")
    return out


def _find_prefix(state: Mapping[str, Tensor]) -> tuple[str, bool] | None:
    """(prefix, sequential) of the query / student backbone in ``state``, or None."""
    found = []
    for key in state:
        if key.endswith("layer1.0.conv1.weight"):
            prefix = key[: -len("layer1.0.conv1.weight")]
            if f"{prefix}conv1.weight" in state:
                found.append((prefix, False))
        elif key.endswith("4.0.conv1.weight"):
            prefix = key[: -len("4.0.conv1.weight")]
            if f"{prefix}0.weight" in state and f"{prefix}1.weight" in state:
                found.append((prefix, True))
    if not found:
        return None

    def rank(item: tuple[str, bool]) -> tuple[bool, int, str]:
        tokens = set(re.split(r"[._]", item[0].lower()))
        return (bool(tokens & _KEY_COPY), len(item[0]), item[0])

    return min(found, key=rank)


def _infer_arch(state: Mapping[str, Tensor]) -> tuple[str | None, int]:
    """(torchvision name or None, input channels) read from a torchvision-layout state dict."""
    conv1 = state.get("conv1.weight")
    in_channels = int(conv1.shape[1]) if conv1 is not None and conv1.dim() == 4 else 0
    blocks = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks.append(max(ids) + 1 if ids else 0)
    return _ARCHS.get((tuple(blocks), "layer1.0.conv3.weight" in state)), in_channels


def _load_strict(net: nn.Module, state: dict[str, Tensor], where: str, name: str, in_channels: int) -> None:
    expected = net.state_dict()
    # older files may lack BatchNorm's counters: keep the fresh ones
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch (file vs model) {_few(shapes)}")
        arch, channels = _infer_arch(state)
        hint = (f"the file looks like {arch} with {channels} input channels: pass name={arch!r}, "
                f"in_channels={channels}" if arch and (arch, channels) != (name, in_channels)
                else f"pass {_FORMATS}")
        raise UsageError(f"{where} does not match {name} with {in_channels} input channels: {'; '.join(parts)}",
                         hint=hint)
    net.load_state_dict(state, strict=True)


def _few(items: list[str], n: int = 4) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more
