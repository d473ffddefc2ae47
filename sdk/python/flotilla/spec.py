"""App specs: the user's form (an ``app.toml`` file, its text, or the same as a dict) turned
into the canonical JSON the ``DeployApp`` call takes.

The canonical form carries every field with defaults applied and string forms decoded
(``gpu = "H100:1"``, ``retries = 2``, ``schedule = { period = "1h30m" }``); it is what the Rust
SDK's ``AppSpec`` serializes to (``sdk/src/spec``). This module does that conversion only:
unknown keys, wrong types and negative counts are refused here with the field's path, and
every other rule (ranges, names, cron syntax, time zones) is checked by the node, whose
:class:`~flotilla.InvalidArgument` names the field the same way.
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from typing import Any

from .errors import InvalidArgument

# Defaults of omitted keys (sdk/src/spec/defaults.rs).
_DEFAULTS: dict[str, Any] = {
    "mode": "exec",
    "cpu": 0.5,
    "memory_mib": 256,
    "min_containers": 0,
    "max_containers": 4,
    "buffer_containers": 0,
    "scaledown_window_s": 60,
    "concurrency": 1,
    "timeout_s": 60,
    "overlap": "allow",
    "catch_up": "none",
    "catch_up_window_s": 3600,
}
_RETRY_DEFAULTS: dict[str, Any] = {"max": 0, "initial_delay_ms": 1000, "backoff": 2.0}
_INT_KEYS = {
    "memory_mib",
    "min_containers",
    "max_containers",
    "buffer_containers",
    "scaledown_window_s",
    "concurrency",
    "timeout_s",
    "catch_up_window_s",
}
_STR_KEYS = {"image", "mode", "gpu", "overlap", "catch_up", "code"}
_FUNCTION_KEYS = _INT_KEYS | _STR_KEYS | {"command", "cpu", "retries", "env", "schedule"}
_UNITS = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)]
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def load(spec: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """The canonical form of ``spec``: a path of an ``app.toml``, TOML text (anything with a
    newline), or a dict in the TOML shape."""
    if isinstance(spec, dict):
        return canonical(spec)
    text = str(spec)
    if "\n" not in text:
        try:
            with open(text, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise InvalidArgument("spec: cannot read %s: %s" % (text, e)) from None
        except tomllib.TOMLDecodeError as e:
            raise InvalidArgument("spec: %s: %s" % (text, e)) from None
        return canonical(raw)
    try:
        return canonical(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument("spec: %s" % e) from None


def canonical(raw: dict[str, Any]) -> dict[str, Any]:
    """Applies defaults and decodes the string forms of an app spec in the TOML shape."""
    _only(raw, {"name", "functions"}, "")
    if "name" not in raw:
        raise InvalidArgument("name: required")
    name = _typed(raw["name"], str, "name")
    functions = _typed(raw.get("functions", {}), dict, "functions")
    return {"name": name, "functions": {k: _function(v, _join("functions", k)) for k, v in sorted(functions.items())}}


def _function(raw: Any, path: str) -> dict[str, Any]:
    raw = _typed(raw, dict, path)
    _only(raw, _FUNCTION_KEYS, path)
    for key in ("image", "command"):
        if key not in raw:
            raise InvalidArgument("%s: required" % _join(path, key))
    out: dict[str, Any] = dict(_DEFAULTS)
    for key, value in raw.items():
        at = _join(path, key)
        if key in _INT_KEYS:
            out[key] = _count(value, at)
        elif key in _STR_KEYS:
            out[key] = _typed(value, str, at)
        elif key == "cpu":
            out[key] = float(_typed(value, (int, float), at))
        elif key == "command":
            out[key] = [_typed(c, str, "%s[%d]" % (at, i)) for i, c in enumerate(_typed(value, list, at))]
        elif key == "env":
            out[key] = {k: _typed(v, str, _join(at, k)) for k, v in _typed(value, dict, at).items()}
    out["gpu"] = _gpu(raw["gpu"], _join(path, "gpu")) if "gpu" in raw else None
    out["retries"] = _retries(raw.get("retries", 0), _join(path, "retries"))
    out["schedule"] = _schedule(raw["schedule"], _join(path, "schedule")) if "schedule" in raw else None
    out.setdefault("env", {})
    return out


def _gpu(text: str, path: str) -> dict[str, Any]:
    """``MODEL:N`` or ``any:N`` as ``{"model": MODEL or None, "count": N}``."""
    model, sep, count = text.partition(":")
    if not sep or not count.isdigit() or not model or not _BARE_KEY.match(model):
        raise InvalidArgument('%s: expected MODEL:N or any:N, e.g. "H100:1" (got %r)' % (path, text))
    return {"model": None if model.lower() == "any" else model, "count": int(count)}


def _retries(value: Any, path: str) -> dict[str, Any]:
    """``retries = N`` or ``{ max, initial_delay_ms, backoff }``."""
    if isinstance(value, dict):
        _only(value, set(_RETRY_DEFAULTS), path)
        out = dict(_RETRY_DEFAULTS)
        for key in ("max", "initial_delay_ms"):
            if key in value:
                out[key] = _count(value[key], _join(path, key))
        if "backoff" in value:
            out["backoff"] = float(_typed(value["backoff"], (int, float), _join(path, "backoff")))
        return out
    return dict(_RETRY_DEFAULTS, max=_count(value, path))


def _schedule(value: Any, path: str) -> dict[str, Any]:
    """``{ cron, timezone }`` or ``{ period, anchor }`` in the tagged JSON form."""
    value = _typed(value, dict, path)
    _only(value, {"cron", "timezone", "period", "anchor"}, path)
    if ("cron" in value) == ("period" in value):
        raise InvalidArgument("%s: set exactly one of `cron` or `period`" % path)
    if "cron" in value:
        if "anchor" in value:
            raise InvalidArgument("%s: only valid with `period`" % _join(path, "anchor"))
        return {
            "kind": "cron",
            "expr": _typed(value["cron"], str, _join(path, "cron")),
            "timezone": _typed(value.get("timezone", "UTC"), str, _join(path, "timezone")),
        }
    if "timezone" in value:
        raise InvalidArgument("%s: only valid with `cron`" % _join(path, "timezone"))
    period = _typed(value["period"], str, _join(path, "period"))
    anchor = _anchor(value["anchor"], _join(path, "anchor")) if "anchor" in value else None
    return {"kind": "period", "every_ms": parse_duration_ms(period, _join(path, "period")), "anchor": anchor}


def _anchor(value: Any, path: str) -> str:
    """An offset date-time (TOML's, a ``datetime`` with a zone, or RFC 3339 text) in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise InvalidArgument("%s: expected an RFC 3339 date-time with an offset, e.g. 2026-01-01T00:00:00Z" % path)
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration_ms(text: str, path: str = "duration") -> int:
    """``"500ms"``, ``"10s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` in milliseconds (units from
    largest to smallest, each at most once)."""
    groups = re.findall(r"(\d+)([a-z]+)", text)
    if not text or "".join(n + u for n, u in groups) != text:
        raise InvalidArgument('%s: invalid duration %r (expected e.g. "10s", "5m", "1h30m"; units d, h, m, s, ms)'
                              % (path, text))
    names = [u for u, _ in _UNITS]
    total, next_unit = 0, 0
    for number, unit in groups:
        if unit not in names or names.index(unit) < next_unit:
            raise InvalidArgument("%s: invalid duration %r: units must be d, h, m, s, ms from largest to smallest, "
                                  "each at most once" % (path, text))
        next_unit = names.index(unit) + 1
        total += int(number) * _UNITS[names.index(unit)][1]
    return total


def _count(value: Any, path: str) -> int:
    """A non-negative integer (the node checks the range)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("%s: expected an integer (got %r)" % (path, value))
    if value < 0:
        raise InvalidArgument("%s: must be >= 0 (got %d)" % (path, value))
    return value


def _typed(value: Any, kind: type | tuple[type, ...], path: str) -> Any:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidArgument("%s: expected %s (got %r)" % (path or "spec", names, value))
    return value


def _only(raw: dict[str, Any], allowed: set[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            raise InvalidArgument("%s: unknown field, expected one of %s" % (_join(path, key), ", ".join(sorted(allowed))))


def _join(parent: str, key: str) -> str:
    """``parent.key``, quoting keys that are not bare TOML keys (as the Rust SDK does)."""
    key = key if _BARE_KEY.match(key) else '"%s"' % key
    return "%s.%s" % (parent, key) if parent else key
