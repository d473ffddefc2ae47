"""A real three-node cluster for the whole session, started from the built binary.

``FLOTILLA_BIN`` names the binary (default: target/debug/flotilla of this repository). The
nodes run with tokens on (the default for nodes) and a cluster secret, on free loopback ports,
each with its own data dir in a temp dir, as node/tests/it/harness.rs starts them. The first
token is made with ``bootstrap_token``. At the end, pass or fail, every node process is killed
and the containers the nodes left (labelled with each node's instance id) are removed.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import flotilla

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FLOTILLA_BIN") or str(REPO / "target" / "debug" / "flotilla")
# Below the kernel's ephemeral range, where outgoing connections take their local ports.
NODE_PORTS = (20_000, 32_000)


def free_port() -> int:
    """A loopback port that was free a moment ago, drawn at random."""
    while True:
        port = random.randrange(*NODE_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


@dataclass
class Cluster:
    """The session's cluster: where its nodes listen and the admin token."""

    dir: Path
    endpoints: list[str]
    token: str
    procs: dict[int, subprocess.Popen[bytes]]

    def client(self, *endpoints: str, token: str | None = None) -> flotilla.Client:
        """A sync client of these endpoints (default: every node), with the admin token. It
        retries unavailable nodes for 60 s, not 10: on a loaded test machine a young cluster
        can take that long to settle on a leader."""
        return flotilla.Client(list(endpoints) or self.endpoints, token=token or self.token, retry_for=60)

    def logs(self) -> str:
        """The tail of every node's log, for failure messages."""
        out = []
        for i in self.procs:
            lines = (self.dir / ("n%d.log" % i)).read_text(errors="replace").splitlines()[-30:]
            out.append("--- node %d ---\n%s" % (i, "\n".join(lines)))
        return "\n".join(out)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, timeout=120)


def _remove_containers(data_dir: Path) -> None:
    """Removes the containers a node left (it keeps them for a restart; this one is gone)."""
    try:
        instance = (data_dir / "instance_id").read_text().strip()
    except OSError:
        return
    ids = _run("docker", "ps", "-aq", "--filter", "label=flotilla.instance=" + instance).stdout.split()
    if ids:
        names = [i.decode() for i in ids]
        subprocess.run(["timeout", "30", "docker", "unpause", *names], capture_output=True)
        subprocess.run(["timeout", "30", "docker", "rm", "-f", "-v", *names], capture_output=True)


def spawn_node(dir: Path, id: int, addr: str, *args: str) -> subprocess.Popen[bytes]:
    """Starts node ``id`` listening on ``addr`` with its data dir and log in ``dir``."""
    log = open(dir / ("n%d.log" % id), "ab")
    return subprocess.Popen(
        [BIN, "node", "--node-id", str(id), "--data-dir", str(dir / ("n%d" % id)), "--listen", addr, *args],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="info,openraft=warn"),
    )


def stop_nodes(dir: Path, procs: dict[int, subprocess.Popen[bytes]]) -> None:
    """Kills the node processes and removes the containers they left."""
    for p in procs.values():
        p.kill()
        p.wait()
    for i in procs:
        _remove_containers(dir / ("n%d" % i))
    # Then the sandboxes' /work disks, loop-mounted under the data dirs: a mount left behind
    # keeps its loop device after the folder is deleted. Deepest first.
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(str(dir))]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True)


def build_busybox() -> None:
    """Builds flotilla/busybox (a no-op when it exists), as a user would."""
    assert Path(BIN).is_file(), "%s missing: build it (cargo build -p flotilla-node --bin flotilla)" % BIN
    built = _run(BIN, "image", "build-base", "busybox")
    assert built.returncode == 0, "build-base busybox: %s" % built.stderr.decode()


@contextlib.contextmanager
def start_cluster(n: int = 3) -> Iterator[Cluster]:
    """Starts ``n`` nodes with tokens on, bootstraps the first token, waits until every node is
    registered, and tears everything down on exit, whatever happened."""
    build_busybox()
    tmp = Path(tempfile.mkdtemp(prefix="flotilla-pytest-"))
    secret = tmp / "secret"
    secret.write_text("pytest-peer-secret\n")
    addrs = {i: "127.0.0.1:%d" % free_port() for i in range(1, n + 1)}
    https = {i: "127.0.0.1:%d" % free_port() for i in addrs}
    initial = ",".join("%d=%s" % kv for kv in addrs.items())
    procs: dict[int, subprocess.Popen[bytes]] = {}
    c = Cluster(tmp, ["http://" + a for a in addrs.values()], "", procs)
    try:
        for i, addr in addrs.items():
            procs[i] = spawn_node(tmp, i, addr, "--initial-cluster", initial, "--cluster-secret-file", str(secret),
                                  "--http", https[i])
        c.token = _bootstrap(c)
        _wait_registered(c, n)
        yield c
    finally:
        stop_nodes(tmp, procs)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The session's three-node cluster."""
    with start_cluster(3) as c:
        yield c


def _bootstrap(c: Cluster) -> str:
    """The first token. A bootstrap carries a request id, so it is retried across the nodes
    until the young cluster has a leader, and a retry after a lost answer gets the same token."""
    with flotilla.Client(c.endpoints, retry_for=60) as anonymous:
        return anonymous.bootstrap_token("pytest").secret


def _wait_registered(c: Cluster, n: int) -> None:
    """Waits until every node is up and has announced its capacity (placement sees all)."""
    deadline = time.monotonic() + 60
    with c.client() as client:
        while True:
            nodes = client.cluster_status().nodes
            if len(nodes) == n and all(n.status == "up" and n.cpus > 0 for n in nodes):
                return
            assert time.monotonic() < deadline, "nodes not registered within 60 s: %s\n%s" % (nodes, c.logs())
            time.sleep(0.2)


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Iterator[flotilla.Client]:
    """A sync client of every node, with the admin token."""
    with cluster.client() as c:
        yield c


@pytest.fixture
def uid() -> str:
    """A short unique suffix for names (apps, sandboxes, tags) made by one test."""
    return "%06x" % random.randrange(1 << 24)
