"""Typed configuration from YAML: frozen dataclasses, dotted ``--set key=value`` overrides, and the
differences between two configurations.

Used by dataset recipes (:mod:`seco_data.recipe`) and by pre-training runs
(:mod:`seco_train.config`): :func:`build` turns a mapping into a dataclass, checking every key and
type and raising the caller's error class with the caller's word for a key ("recipe key",
"config key"), so messages name exactly what the user wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .errors import UsageError


class Schema:
    """How errors speak: the error class and the word for a key (``recipe key``, ``config key``)."""

    def __init__(self, error: type[UsageError] = UsageError, word: str = "key"):
        self.error, self.word = error, word

    def fail(self, key: str, message: str, hint: str | None = None) -> UsageError:
        return self.error(f"{self.word} {key!r} {message}", hint=hint)


# -- YAML -----------------------------------------------------------------------------------------


def load_mapping(path: str | Path, schema: Schema, what: str) -> dict:
    """The top-level mapping of a YAML file; refuses unreadable, binary, non-mapping and empty files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise schema.error(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        raw = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise schema.error(f"{what} {path} is not a UTF-8 text file",
                           hint=f"pass a YAML {what}; see catalogs/ for examples") from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an impossible date such as 2021-13-01
        raise schema.error(f"cannot read {what} {path}: {' '.join(str(e).split())}") from None
    if raw is None:
        raise schema.error(f"{what} {path} is empty",
                           hint=f"write the {what}'s keys into it (see catalogs/ for examples), or leave the option out")
    if not isinstance(raw, dict):
        raise schema.error(f"{what} {path} must be a mapping of keys to values, not {type(raw).__name__}")
    return raw


def parse_value(text: str) -> Any:
    """A command-line value typed as YAML would (``30`` -> 30, ``[a, b]`` -> list, ``x`` -> 'x')."""
    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):  # unparsable YAML, or a malformed date such as 2021-13-01
        return text


def parse_override(text: str, schema: Schema | None = None) -> tuple[str, Any]:
    """``seasons.window_days=30`` -> (``seasons.window_days``, 30)."""
    schema = schema or Schema()
    if "=" not in text:
        raise schema.error(f"override {text!r} is not KEY=VALUE", hint="e.g. --set seasons.window_days=30")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise schema.error(f"override {text!r} has no valid key before '='", hint="e.g. --set seasons.window_days=30")
    return key, parse_value(value)


def set_dotted(raw: dict, key: str, value: Any, schema: Schema | None = None) -> None:
    """``raw[a][b] = value`` for ``key = "a.b"``, creating sections as needed."""
    schema = schema or Schema()
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise schema.fail(key, f"cannot be set: {part!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: dict[str, Any] | None, schema: Schema) -> dict:
    """A deep copy of ``raw`` (dates as text) with the dotted ``overrides`` applied."""
    raw = json.loads(json.dumps(raw, default=str))
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value, schema)
    return raw


# -- building dataclasses ---------------------------------------------------------------------------


def build(cls, raw: Any, schema: Schema, prefix: str = ""):
    """An instance of dataclass ``cls`` from the mapping ``raw``: every key known, every value of its
    field's type (numbers from text, tuples from lists or comma-separated text, dates ISO 8601)."""
    if not isinstance(raw, dict):
        raise schema.fail(prefix.rstrip(".") or "<root>", "must be a mapping")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            guess = difflib.get_close_matches(str(key), names, n=1)
            raise schema.fail(prefix + str(key), "is unknown" + (f" (did you mean {prefix + guess[0]!r}?)" if guess else ""),
                              hint=f"allowed keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, prefix + key, schema)
    return cls(**kwargs)


def _coerce(tp, value: Any, key: str, schema: Schema):
    origin = get_origin(tp)
    args = get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, schema, key + ".")
    if origin is type(None) or tp is type(None):
        return None
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, key, schema)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise schema.fail(key, f"must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]", schema) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise schema.fail(key, f"must be a mapping, got {value!r}")
        return {_coerce(args[0], k, key, schema): _coerce(args[1], v, f"{key}.{k}", schema) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise schema.fail(key, f"must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise schema.fail(key, f"must be a number, got {value!r}")
        try:
            num = float(value)
        except ValueError:
            raise schema.fail(key, f"must be a number, got {value!r}") from None
        if num != num or num in (float("inf"), float("-inf")):
            raise schema.fail(key, f"must be a finite number, got {value!r}")
        if tp is int:
            if num != int(num):
                raise schema.fail(key, f"must be a whole number, got {value!r}")
            return int(num)
        return num
    if tp is dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise schema.fail(key, f"must be a date YYYY-MM-DD, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise schema.fail(key, f"must be text, got {value!r}")
        return str(value)
    return value  # pragma: no cover


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested containers of them) as plain JSON-able values; dates as ISO text."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def differences(old: dict, new: dict, *, ignore: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings (top-level keys in ``ignore``
    skipped): what a refused resume names."""
    keys = []
    for k in sorted(set(old) | set(new), key=str):
        if not prefix and k in ignore:
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differences(a, b, prefix=f"{prefix}{k}.")
        elif a != b:
            keys.append(prefix + str(k))
    return keys
