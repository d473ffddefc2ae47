"""App specs in the user's shape (TOML or dict) to the canonical JSON form: defaults, the
string forms, and refusals that name the field. Pure: no cluster."""

from __future__ import annotations

import datetime

import pytest

import flotilla
from flotilla import spec


def test_defaults_and_string_forms() -> None:
    out = spec.load('''name = "etl"
[functions.tick]
image = "flotilla/busybox"
command = ["sh", "-c", "date"]
gpu = "H100:2"
retries = 3
env = { KEY = "value" }
schedule = { period = "1h30m", anchor = 2026-01-01T01:00:00+01:00 }
''')
    tick = out["functions"]["tick"]
    assert tick["gpu"] == {"model": "H100", "count": 2}
    assert tick["retries"] == {"max": 3, "initial_delay_ms": 1000, "backoff": 2.0}
    assert tick["schedule"] == {"kind": "period", "every_ms": 5_400_000, "anchor": "2026-01-01T00:00:00.000000Z"}
    assert tick["env"] == {"KEY": "value"}
    assert (tick["mode"], tick["cpu"], tick["memory_mib"], tick["max_containers"], tick["catch_up"]) == (
        "exec", 0.5, 256, 4, "none")
    cron = spec.canonical({"name": "a", "functions": {"f": {"image": "i", "command": ["x"],
                                                           "schedule": {"cron": "*/5 * * * *"}}}})
    assert cron["functions"]["f"]["schedule"] == {"kind": "cron", "expr": "*/5 * * * *", "timezone": "UTC"}
    anchor = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    period = spec.canonical({"name": "a", "functions": {"f": {"image": "i", "command": ["x"], "gpu": "any:1",
                                                             "schedule": {"period": "10s", "anchor": anchor}}}})
    assert period["functions"]["f"]["gpu"] == {"model": None, "count": 1}
    assert period["functions"]["f"]["schedule"]["anchor"] == "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    "function, message",
    [
        ({"image": "i"}, r"functions\.f\.command: required"),
        ({"image": "i", "command": ["x"], "cpus": 1}, r"functions\.f\.cpus: unknown field"),
        ({"image": "i", "command": "x"}, r"functions\.f\.command: expected list"),
        ({"image": "i", "command": ["x", 1]}, r"functions\.f\.command\[1\]: expected str"),
        ({"image": "i", "command": ["x"], "timeout_s": True}, r"functions\.f\.timeout_s: expected an integer"),
        ({"image": "i", "command": ["x"], "gpu": "H100"}, r"functions\.f\.gpu: expected MODEL:N"),
        ({"image": "i", "command": ["x"], "retries": {"tries": 1}}, r"functions\.f\.retries\.tries: unknown"),
        ({"image": "i", "command": ["x"], "schedule": {}}, r"functions\.f\.schedule: set exactly one"),
        ({"image": "i", "command": ["x"], "schedule": {"period": "5m1h"}}, r"largest to smallest"),
        ({"image": "i", "command": ["x"], "schedule": {"period": "10s", "timezone": "UTC"}},
         r"schedule\.timezone: only valid with `cron`"),
        ({"image": "i", "command": ["x"], "schedule": {"period": "10s", "anchor": "2026-01-01T00:00:00"}},
         r"schedule\.anchor: expected an RFC 3339 date-time with an offset"),
        ({"image": "i", "command": ["x"], "env": {"K": 1}}, r"functions\.f\.env\.K: expected str"),
    ],
)
def test_refusals_name_the_field(function: dict, message: str) -> None:
    with pytest.raises(flotilla.InvalidArgument, match=message):
        spec.canonical({"name": "a", "functions": {"f": function}})


def test_quoted_keys_and_syntax_errors() -> None:
    with pytest.raises(flotilla.InvalidArgument, match=r'functions\."a\.b"\.image: required'):
        spec.canonical({"name": "a", "functions": {"a.b": {"command": ["x"]}}})
    with pytest.raises(flotilla.InvalidArgument, match="name: required"):
        spec.canonical({"functions": {}})
    with pytest.raises(flotilla.InvalidArgument, match="spec: "):
        spec.load('name = "a"\n[functions.f\n')
