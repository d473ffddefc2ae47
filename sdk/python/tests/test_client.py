"""The client itself: configuration from arguments and the environment, endpoint rotation past
a dead node, retries that keep the request id, tokens (wrong, created, revoked, bootstrap
refused), and malformed arguments."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import flotilla
import flotilla.aio
from conftest import Cluster, free_port
from flotilla.v1 import control_pb2, control_pb2_grpc


def test_the_environment_configures_the_default_client(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_ENDPOINT", ",".join(cluster.endpoints))
    monkeypatch.setenv("FLOTILLA_TOKEN", cluster.token)
    with flotilla.Client() as c:
        assert c.endpoints == cluster.endpoints
        assert c.cluster_status().leader in (1, 2, 3)
    monkeypatch.setenv("FLOTILLA_TLS_CA", "/no/such/ca.pem")
    with pytest.raises(flotilla.InvalidArgument, match="tls_ca"):
        flotilla.Client()


def test_a_dead_endpoint_is_skipped(cluster: Cluster) -> None:
    dead = "http://127.0.0.1:%d" % free_port()
    with cluster.client(dead, cluster.endpoints[1]) as c:
        t = time.monotonic()
        status = c.cluster_status()
        assert len(status.nodes) == 3
        assert time.monotonic() - t < 5
    with flotilla.Client(dead, token=cluster.token, retry_for=0.5) as c:
        with pytest.raises(flotilla.Unavailable, match=dead):
            c.cluster_status()


def test_wrong_or_missing_token_is_unauthenticated(cluster: Cluster) -> None:
    for token in ("flt_0123456789abcdef_00", "garbage"):
        with flotilla.Client(cluster.endpoints, token=token) as c:
            with pytest.raises(flotilla.Unauthenticated):
                c.cluster_status()
            # The data plane (Worker service) checks it too.
            with pytest.raises(flotilla.Unauthenticated):
                flotilla.Sandbox.from_id("sb-x", client=c)
    with flotilla.Client(cluster.endpoints, token="") as c:
        with pytest.raises(flotilla.Unauthenticated, match="missing token"):
            flotilla.list_apps(client=c)


def test_tokens_create_list_revoke(cluster: Cluster, client: flotilla.Client, uid: str) -> None:
    new = client.create_token("py-" + uid)
    assert new.secret.startswith("flt_") and new.token.name == "py-" + uid
    assert new.token.id in [t.id for t in client.list_tokens()]
    with cluster.client(token=new.secret) as c:
        assert c.cluster_status().leader is not None
        revoked = client.revoke_token(new.token.id)
        assert revoked.revoked_at_ms is not None
        with pytest.raises(flotilla.Unauthenticated):
            c.cluster_status()
    # The cluster has tokens: bootstrap is closed.
    with flotilla.Client(cluster.endpoints) as anonymous:
        with pytest.raises(flotilla.AlreadyExists, match="already has tokens"):
            anonymous.bootstrap_token("again")
    with pytest.raises(flotilla.NotFound):
        client.revoke_token("tok-does-not-exist")


def test_malformed_arguments() -> None:
    with pytest.raises(flotilla.InvalidArgument, match="endpoint"):
        flotilla.Client("ftp://host:1")
    with pytest.raises(flotilla.InvalidArgument, match="at least one endpoint"):
        flotilla.Client(" , ")
    with pytest.raises(flotilla.InvalidArgument, match="token"):
        flotilla.Client("http://127.0.0.1:1", token="bad\ntoken")


class _Recorder(control_pb2_grpc.ControlServicer):
    """A Control server that records CreateSandbox request ids; unavailable if ``down``, and
    never answering ClusterStatus if ``hang``."""

    def __init__(self, down: bool, hang: bool = False) -> None:
        self.down, self.hang = down, hang
        self.request_ids: list[str] = []
        self.status_calls = 0

    async def ClusterStatus(self, request, context):  # noqa: N802 - the gRPC method's name
        self.status_calls += 1
        if self.hang:
            await asyncio.sleep(5)
        return control_pb2.ClusterStatusReply(term=7)

    async def CreateSandbox(self, request, context):  # noqa: N802 - the gRPC method's name
        self.request_ids.append(request.request_id)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader")
        return control_pb2.Sandbox(id="sb-fake", state="running")


def test_a_retried_request_keeps_its_request_id() -> None:
    """The first endpoint answers UNAVAILABLE; the same request, same id, goes to the next."""

    async def main() -> None:
        servers, recorders, endpoints = [], [], []
        for down in (True, False):
            server = grpc.aio.server()
            recorder = _Recorder(down)
            control_pb2_grpc.add_ControlServicer_to_server(recorder, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            recorders.append(recorder)
            endpoints.append("http://127.0.0.1:%d" % port)
        try:
            async with flotilla.aio.AsyncClient(endpoints) as c:
                sb = await flotilla.aio.Sandbox.create(client=c)
                assert sb.object_id == "sb-fake"
                sb2 = await flotilla.aio.Sandbox.create(client=c)
                assert sb2.object_id == "sb-fake"
        finally:
            for s in servers:
                await s.stop(None)
        down, up = recorders
        assert len(down.request_ids) == 1 and len(up.request_ids) == 2
        assert down.request_ids[0] == up.request_ids[0]
        # A new create is a new request, with its own id.
        assert up.request_ids[1] != up.request_ids[0]

    asyncio.run(main())


def test_a_hung_endpoint_times_out_once_then_the_next_is_tried() -> None:
    """A node that takes a request and never answers: Timeout (no retry, the outcome is
    unknown), and the next request starts at the next endpoint."""

    async def main() -> None:
        servers, recorders, endpoints = [], [], []
        for hang in (True, False):
            server = grpc.aio.server()
            recorder = _Recorder(down=False, hang=hang)
            control_pb2_grpc.add_ControlServicer_to_server(recorder, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            recorders.append(recorder)
            endpoints.append("http://127.0.0.1:%d" % port)
        try:
            async with flotilla.aio.AsyncClient(endpoints, request_timeout=0.5) as c:
                with pytest.raises(flotilla.Timeout, match="no answer"):
                    await c.cluster_status()
                assert (await c.cluster_status()).term == 7
        finally:
            for s in servers:
                await s.stop(None)
        hung, ok = recorders
        assert (hung.status_calls, ok.status_calls) == (1, 1)

    asyncio.run(main())


def test_requests_follow_the_leader(cluster: Cluster, client: flotilla.Client) -> None:
    """Replies name the leader; the next request goes to it (saving the forwarding hop)."""
    leader = client.cluster_status().leader
    assert leader is not None
    # The leader last: the first answer comes from a follower.
    ordered = [e for e in cluster.endpoints if e != cluster.endpoints[leader - 1]] + [cluster.endpoints[leader - 1]]
    with cluster.client(*ordered) as c:
        assert c.cluster_status().answered_by != leader
        assert c.endpoints[c.aio._preferred] == cluster.endpoints[leader - 1]
        assert c.cluster_status().answered_by == leader
