"""Apps, schedules and runs through the sync API: deploy a TOML file, TOML text and a dict;
list, show, stop, remove; invalid specs named by field (refused here and by the node); a
period schedule that fires, paused, resumed and triggered by hand."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import flotilla


def test_deploy_from_a_toml_file_redeploy_stop_and_remove(client: flotilla.Client, tmp_path: Path,
                                                          uid: str) -> None:
    name = "pyapp-" + uid
    path = tmp_path / "app.toml"
    path.write_text('name = "%s"\n\n[functions.hello]\nimage = "flotilla/busybox"\ncommand = ["echo", "hi"]\n'
                    'cpu = 0.1\nretries = { max = 2, initial_delay_ms = 10 }\ngpu = "any:1"\nmin_containers = 0\n'
                    % name)
    app = flotilla.deploy(path, client=client)
    assert (app.name, app.version, app.state, app.functions) == (name, 1, "deployed", ["hello"])
    fn = app.spec["functions"]["hello"]
    assert fn["retries"] == {"max": 2, "initial_delay_ms": 10, "backoff": 2.0}
    assert fn["gpu"] == {"model": None, "count": 1}
    assert (fn["memory_mib"], fn["timeout_s"], fn["cpu"]) == (256, 60, 0.1)
    # A redeploy (here from TOML text, as a str path would be read) bumps the version.
    again = flotilla.deploy(path.read_text().replace('"hi"', '"hello"'), client=client)
    assert again.version == 2
    assert flotilla.get_app(name, client=client).spec["functions"]["hello"]["command"] == ["echo", "hello"]
    assert name in [a.name for a in flotilla.list_apps(client=client)]
    assert flotilla.stop_app(name, client=client).state == "stopped"
    assert flotilla.get_app(name, client=client).state == "stopped"
    assert flotilla.remove_app(name, client=client).name == name
    with pytest.raises(flotilla.NotFound):
        flotilla.get_app(name, client=client)


def test_invalid_specs_name_the_field(client: flotilla.Client, tmp_path: Path) -> None:
    base = {"name": "pybad", "functions": {"f": {"image": "flotilla/busybox", "command": ["true"]}}}

    def with_fn(**fields: object) -> dict[str, object]:
        return {"name": "pybad", "functions": {"f": dict(base["functions"]["f"], **fields)}}

    # Refused before sending: unknown keys, wrong types, negative counts, bad strings.
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.imagee: unknown field"):
        flotilla.deploy(with_fn(imagee="x"), client=client)
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.memory_mib: expected an integer"):
        flotilla.deploy(with_fn(memory_mib="lots"), client=client)
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.max_containers: must be >= 0"):
        flotilla.deploy(with_fn(max_containers=-1), client=client)
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.schedule\.period: invalid duration"):
        flotilla.deploy(with_fn(schedule={"period": "1.5h"}), client=client)
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.command: required"):
        flotilla.deploy({"name": "pybad", "functions": {"f": {"image": "flotilla/busybox"}}}, client=client)
    with pytest.raises(flotilla.InvalidArgument, match="cannot read"):
        flotilla.deploy(tmp_path / "missing.toml", client=client)
    # Refused by the node, which checks every rule and names the field the same way.
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.max_containers"):
        flotilla.deploy(with_fn(max_containers=0), client=client)
    with pytest.raises(flotilla.InvalidArgument, match=r"functions\.f\.schedule\.cron"):
        flotilla.deploy(with_fn(schedule={"cron": "not a cron"}), client=client)
    with pytest.raises(flotilla.InvalidArgument, match="name"):
        flotilla.deploy(dict(base, name="Bad Name"), client=client)
    with pytest.raises(flotilla.NotFound):
        flotilla.get_app("pybad", client=client)


def test_a_period_schedule_fires_and_can_be_paused_resumed_and_triggered(client: flotilla.Client,
                                                                         uid: str) -> None:
    name = "pysched-" + uid
    flotilla.deploy(
        {"name": name, "functions": {"tick": {
            "image": "flotilla/busybox", "command": ["sh", "-c", "echo tick"], "cpu": 0.1, "memory_mib": 64,
            "schedule": {"period": "1s"}, "overlap": "skip"}}},
        client=client,
    )
    try:
        (sched,) = flotilla.list_schedules(name, client=client)
        assert (sched.function, sched.spec["kind"], sched.spec["every_ms"], sched.overlap) == (
            "tick", "period", 1000, "skip")
        deadline = time.monotonic() + 60
        while not any(r.state == "succeeded" for r in flotilla.list_runs(name, "tick", scheduled=True,
                                                                          client=client)):
            assert time.monotonic() < deadline, "no scheduled run succeeded within 60 s"
            time.sleep(0.5)
        ran = [r for r in flotilla.list_runs(name, "tick", scheduled=True, client=client) if r.state == "succeeded"]
        assert ran[0].output == b"tick\n" and ran[0].scheduled_at_ms is not None
        assert flotilla.pause_schedule(name, "tick", client=client).paused
        manual = flotilla.Function.lookup(name, "tick", client=client).trigger()
        assert manual.scheduled_at_ms is None
        assert flotilla.FunctionCall.from_id(manual.id, client=client).get(timeout=60) == b"tick\n"
        assert not flotilla.resume_schedule(name, "tick", client=client).paused
        with pytest.raises(flotilla.NotFound):
            flotilla.pause_schedule(name, "nope", client=client)
    finally:
        flotilla.remove_app(name, client=client)
