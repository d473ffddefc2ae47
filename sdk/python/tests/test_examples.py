"""The examples in sdk/python/examples run as a user runs them, against the session's cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import flotilla
from conftest import BIN, REPO, Cluster

EXAMPLES = REPO / "sdk" / "python" / "examples"


def run(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLOTILLA_ENDPOINT=",".join(cluster.endpoints), FLOTILLA_TOKEN=cluster.token)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def python_image() -> None:
    built = subprocess.run([BIN, "image", "build-base", "python"], capture_output=True, timeout=600)
    assert built.returncode == 0, built.stderr.decode()


def test_the_agent_example_runs_code_snapshots_and_branches(cluster: Cluster, client: flotilla.Client) -> None:
    out = run(cluster, str(EXAMPLES / "agent.py"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "step 1: prepared 3 rows\nbranch warmest: Rome\nbranch mean: 13.333333333333334\n"
    # It cleaned up after itself.
    assert flotilla.Sandbox.list(tags={"example": "agent"}, client=client) == []


def test_the_modal_style_example_app(cluster: Cluster, client: flotilla.Client) -> None:
    out = run(cluster, "-m", "flotilla", "deploy", str(EXAMPLES / "etl_app.py"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("etl-example version ")
    try:
        stats = flotilla.Function.lookup("etl-example", "stats", client=client)
        assert stats.remote([3, 1, 2]) == {"min": 1, "max": 3, "mean": 2.0}
        with pytest.raises(flotilla.FunctionError, match="ValueError: no values"):
            stats.remote([])
        (sched,) = flotilla.list_schedules("etl-example", client=client)
        assert (sched.function, sched.spec["every_ms"]) == ("heartbeat", 60_000)
    finally:
        flotilla.remove_app("etl-example", client=client)
