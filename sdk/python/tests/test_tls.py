"""TLS: a one-node cluster serving with a certificate from a test CA (made with the openssl
CLI); the client trusts it through ``tls_ca`` or ``FLOTILLA_TLS_CA``, and refuses a node whose
certificate chains to another CA."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flotilla
from conftest import build_busybox, free_port, spawn_node, stop_nodes


def make_certs(dir: Path, tag: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (cert, key, ca)."""
    p = lambda f: dir / ("%s-%s" % (tag, f))  # noqa: E731

    def run(*args: object) -> None:
        o = subprocess.run(["openssl", *map(str, args)], capture_output=True)
        assert o.returncode == 0, "openssl %s: %s" % (args, o.stderr.decode())

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=flotilla-py-ca-" + tag,
        "-keyout", p("ca.key"), "-out", p("ca.crt"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", p("node.key"),
        "-out", p("node.csr"))
    p("ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", p("node.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial",
        "-days", "2", "-extfile", p("ext"), "-out", p("node.crt"))
    return p("node.crt"), p("node.key"), p("ca.crt")


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """One TLS node (no tokens): its https endpoint, its CA, and another CA."""
    build_busybox()
    dir = tmp_path_factory.mktemp("tls")
    cert, key, ca = make_certs(dir, "good")
    _, _, other_ca = make_certs(dir, "other")
    addr = "127.0.0.1:%d" % free_port()
    procs = {1: spawn_node(dir, 1, addr, "--bootstrap", "--no-auth", "--tls-cert", str(cert), "--tls-key",
                           str(key), "--tls-ca", str(ca))}
    try:
        yield "https://" + addr, ca, other_ca
    finally:
        stop_nodes(dir, procs)


def test_tls_with_the_ca_from_an_argument_or_the_environment(tls_node: tuple[str, Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, ca, other_ca = tls_node
    with flotilla.Client(endpoint, tls_ca=str(ca), retry_for=30) as c:
        deadline = time.monotonic() + 30
        while c.cluster_status().leader is None:
            assert time.monotonic() < deadline, "no leader within 30 s"
            time.sleep(0.2)
        sb = flotilla.Sandbox.create(cpu=0.1, memory=64, client=c)
        try:
            assert sb.exec("echo", "sealed").stdout.read() == "sealed\n"
        finally:
            sb.terminate()
    monkeypatch.setenv("FLOTILLA_TLS_CA", str(ca))
    with flotilla.Client(endpoint) as c:
        assert c.cluster_status().leader == 1
    # PEM bytes work as well as a path.
    with flotilla.Client(endpoint, tls_ca=ca.read_bytes()) as c:
        assert c.cluster_status().leader == 1
    # A client trusting another CA, or speaking plaintext, gets nowhere.
    for wrong in (flotilla.Client(endpoint, tls_ca=str(other_ca), retry_for=0.5),
                  flotilla.Client(endpoint.replace("https", "http"), retry_for=0.5)):
        with wrong, pytest.raises(flotilla.Unavailable):
            wrong.cluster_status()
