"""Functions through the sync API: TOML-declared exec-mode functions (bytes in, bytes out) on
busybox, called through every node; spawn / get / cancel; map with bounded parallelism; and
failures: a function that fails, unknown names, oversized input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import flotilla
from conftest import Cluster

APP = {
    "name": "pyfn",
    "functions": {
        "upper": {"image": "flotilla/busybox", "command": ["sh", "-c", "tr a-z A-Z"], "cpu": 0.1,
                  "memory_mib": 64, "max_containers": 4},
        "broken": {"image": "flotilla/busybox", "command": ["sh", "-c", "echo 'no such table' >&2; exit 3"],
                   "cpu": 0.1, "memory_mib": 64},
        "slow": {"image": "flotilla/busybox", "command": ["sh", "-c", "sleep 1; cat"], "cpu": 0.1,
                 "memory_mib": 64, "max_containers": 4},
        "sleepy": {"image": "flotilla/busybox", "command": ["sh", "-c", "sleep 30; cat"], "cpu": 0.1,
                   "memory_mib": 64},
    },
}


@pytest.fixture(scope="module")
def app(client: flotilla.Client) -> Iterator[flotilla.AppInfo]:
    """The functions app, deployed from a dict, removed at the end."""
    info = flotilla.deploy(APP, client=client)
    yield info
    flotilla.remove_app(info.name, client=client)


def test_remote_through_every_node(cluster: Cluster, app: flotilla.AppInfo) -> None:
    for endpoint in cluster.endpoints:
        with cluster.client(endpoint) as one:
            f = flotilla.Function.lookup(app.name, "upper", client=one)
            assert f.remote(b"hello via " + endpoint.encode()) == b"HELLO VIA " + endpoint.upper().encode()
    # str input is sent as UTF-8.
    assert flotilla.Function.lookup(app.name, "upper", client=cluster.client()).remote("abc") == b"ABC"


def test_a_failing_function_raises_function_error(client: flotilla.Client, app: flotilla.AppInfo) -> None:
    with pytest.raises(flotilla.FunctionError, match="exit 3: no such table"):
        flotilla.Function.lookup(app.name, "broken", client=client).remote(b"x")


def test_unknown_names_and_oversized_input(client: flotilla.Client, app: flotilla.AppInfo) -> None:
    with pytest.raises(flotilla.NotFound, match="nope"):
        flotilla.Function.lookup(app.name, "nope", client=client).remote(b"x")
    with pytest.raises(flotilla.NotFound, match="ghost-app"):
        flotilla.Function.lookup("ghost-app", "upper", client=client).remote(b"x")
    with pytest.raises(flotilla.NotFound):
        flotilla.FunctionCall.from_id("fc-does-not-exist", client=client).get(timeout=1)
    upper = flotilla.Function.lookup(app.name, "upper", client=client)
    with pytest.raises(flotilla.InvalidArgument, match="input.*4194304"):
        upper.remote(b"a" * ((4 << 20) + 1))
    # Exactly the limit works, both ways.
    assert upper.remote(b"a" * (4 << 20)) == b"A" * (4 << 20)


def test_spawn_get_and_the_call_record(client: flotilla.Client, app: flotilla.AppInfo) -> None:
    f = flotilla.Function.lookup(app.name, "upper", client=client)
    call = f.spawn(b"durable")
    assert call.object_id.startswith("fc-")
    assert call.get(timeout=60) == b"DURABLE"
    record = flotilla.FunctionCall.from_id(call.object_id, client=client).info()
    assert (record.state, record.app, record.function, record.output) == ("succeeded", app.name, "upper", b"DURABLE")
    failed = flotilla.Function.lookup(app.name, "broken", client=client).spawn(b"x")
    with pytest.raises(flotilla.FunctionError, match="no such table"):
        failed.get(timeout=60)
    runs = flotilla.list_runs(app.name, client=client)
    assert {call.object_id, failed.object_id} <= {r.id for r in runs}


def test_get_times_out_and_cancel_ends_the_call(client: flotilla.Client, app: flotilla.AppInfo) -> None:
    call = flotilla.Function.lookup(app.name, "sleepy", client=client).spawn(b"late")
    with pytest.raises(flotilla.Timeout, match="still"):
        call.get(timeout=1)
    assert call.cancel().state == "cancelled"
    with pytest.raises(flotilla.FunctionError, match="cancelled"):
        call.get(timeout=10)


def test_map_keeps_order_and_bounds_parallelism(client: flotilla.Client, app: flotilla.AppInfo) -> None:
    slow = flotilla.Function.lookup(app.name, "slow", client=client)
    slow.remote(b"warm")  # a replica up, so cold start does not blur the timing
    inputs = [b"a%d" % i for i in range(4)]
    t = time.monotonic()
    assert list(slow.map(inputs, parallelism=2)) == inputs
    # Four one-second inputs, two at a time: at least two seconds.
    assert time.monotonic() - t >= 2.0
    upper = flotilla.Function.lookup(app.name, "upper", client=client)
    assert list(upper.map([b"x", "y"], parallelism=8)) == [b"X", b"Y"]
    broken = flotilla.Function.lookup(app.name, "broken", client=client)
    results = list(broken.map([b"1", b"2"], return_exceptions=True))
    assert len(results) == 2 and all(isinstance(r, flotilla.FunctionError) for r in results)
    with pytest.raises(flotilla.FunctionError):
        list(broken.map([b"1"]))
