"""Connection handling: an ordered list of endpoints, tried in turn, with bounded retries.

The same policy as the Rust SDK (``sdk/src/client.rs``): requests go to the endpoint that
answered last; every reply names the leader (``x-flotilla-leader``) and, when that is one of
this client's endpoints, the next request goes straight to it. A failure that means "not
served" (:class:`~flotilla.Unavailable`: node down, no leader yet) moves on to the next
endpoint, then the whole list again with a growing pause until ``retry_for`` has passed.
Requests that create something carry a request id chosen once, before the first attempt, so a
retry of the same request is applied once. A request the endpoint took and never answered
(our own deadline) is not retried: its outcome is unknown.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc

from ..errors import InvalidArgument, Timeout, Unavailable, from_rpc_error
from ..records import ClusterStatus, Membership, NewToken, StoredBlob, TokenInfo
from ..v1 import control_pb2 as pb
from ..v1 import control_pb2_grpc as control_grpc
from ..v1 import observe_pb2_grpc as observe_grpc
from ..v1 import worker_pb2_grpc as worker_grpc

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:7100"
LEADER_HEADER = "x-flotilla-leader"
# Replies (archives, function outputs) may be large; the nodes accept 64 MiB messages too.
MAX_MESSAGE = 64 << 20
# Bytes per PutBlob message.
_BLOB_CHUNK = 1 << 20
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


class _Endpoint:
    """One node: its URL, its channel and the stubs of the services it serves."""

    def __init__(self, url: str, channel: grpc.aio.Channel) -> None:
        self.url = url
        self.hostport = url.split("://", 1)[1].rstrip("/")
        self.channel = channel
        self.control = control_grpc.ControlStub(channel)
        self.bootstrap = control_grpc.BootstrapStub(channel)
        self.worker = worker_grpc.WorkerStub(channel)
        self.observe = observe_grpc.ObserveStub(channel)


class AsyncClient:
    """A client of one Flotilla cluster, for asyncio code. Share one per program.

    Arguments default to the environment, as the CLI's do: ``FLOTILLA_ENDPOINT`` (a comma-
    separated list; default ``http://127.0.0.1:7100``), ``FLOTILLA_TOKEN``, and
    ``FLOTILLA_TLS_CA`` (path of a PEM CA certificate for ``https://`` endpoints). Channels
    connect lazily, so creating a client never fails on a cluster that is still starting;
    only malformed arguments raise :class:`~flotilla.InvalidArgument`.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        tls_ca: str | bytes | None = None,
        request_timeout: float = 60.0,
        retry_for: float = 10.0,
    ) -> None:
        if endpoints is None:
            endpoints = os.environ.get("FLOTILLA_ENDPOINT") or DEFAULT_ENDPOINT
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        if token is None:
            token = os.environ.get("FLOTILLA_TOKEN") or None
        if tls_ca is None and os.environ.get("FLOTILLA_TLS_CA"):
            tls_ca = os.environ["FLOTILLA_TLS_CA"]
        self._metadata: tuple[tuple[str, str], ...] = ()
        if token:
            if not token.isascii() or not token.isprintable():
                raise InvalidArgument("token: must be printable ASCII")
            self._metadata = (("authorization", "Bearer " + token),)
        ca = _read_ca(tls_ca)
        self._endpoints: list[_Endpoint] = []
        for e in endpoints:
            e = e.strip()
            if not e:
                continue
            url = e if "://" in e else "http://" + e
            scheme, rest = url.split("://", 1)
            target = rest.rstrip("/")
            if scheme not in ("http", "https") or not target or "/" in target:
                raise InvalidArgument("endpoint %r: expected http://HOST:PORT or https://HOST:PORT" % e)
            if scheme == "https":
                creds = grpc.ssl_channel_credentials(root_certificates=ca)
                channel = grpc.aio.secure_channel(target, creds, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
            self._endpoints.append(_Endpoint(url, channel))
        if not self._endpoints:
            raise InvalidArgument("endpoint: at least one endpoint is required")
        self._preferred = 0
        self.request_timeout = request_timeout
        self.retry_for = retry_for

    @property
    def endpoints(self) -> list[str]:
        """The endpoints this client tries, in order."""
        return [e.url for e in self._endpoints]

    async def close(self) -> None:
        """Closes the connections; the client must not be used afterwards."""
        for e in self._endpoints:
            await e.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata: the token, when the client has one."""
        return self._metadata

    async def attempts(self, call: Callable[[int, _Endpoint], Awaitable[T]]) -> T:
        """Runs ``call`` on each endpoint in turn, the preferred one first, until one succeeds
        or fails with something other than :class:`~flotilla.Unavailable`, retrying the whole
        list with a growing pause until ``retry_for`` has passed. ``call`` raises SDK errors."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        backoff = 0.05
        n = len(self._endpoints)
        while True:
            start = self._preferred
            last: Unavailable = Unavailable("no endpoint answered")
            for k in range(n):
                i = (start + k) % n
                try:
                    return await call(i, self._endpoints[i])
                except Unavailable as e:
                    last = Unavailable("node %s: %s" % (self._endpoints[i].url, e))
            if loop.time() + backoff > deadline:
                raise last
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    async def control(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """A unary Control call (``method`` as named in control.proto) on the endpoints in
        turn; each attempt bounded by ``timeout`` (default ``request_timeout``). The leader
        named in the reply is tried first next time. A request with a ``request_id`` sends it
        as its ``x-request-id`` too, so the node logs the request and the work it starts (a
        sandbox, a call) under one id."""
        bound = self.request_timeout if timeout is None else timeout
        metadata = self._metadata
        request_id = getattr(request, "request_id", "")
        if request_id:
            metadata = metadata + (("x-request-id", request_id),)

        async def attempt(i: int, ep: _Endpoint) -> Any:
            call = getattr(ep.control, method)(request, timeout=bound, metadata=metadata)
            try:
                reply = await call
            except grpc.aio.AioRpcError as e:
                ours = e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and (e.details() or "").startswith("Deadline")
                if ours:
                    # The endpoint took the call and never answered: the outcome is unknown,
                    # so no retry; the next call starts at the next endpoint.
                    if self._preferred == i:
                        self._preferred = (i + 1) % len(self._endpoints)
                    raise Timeout("node %s: no answer within %.0f s" % (ep.url, bound)) from None
                raise from_rpc_error(e) from None
            leader = self._leader_index(await call.initial_metadata())
            self._preferred = i if leader is None else leader
            return reply

        return await self.attempts(attempt)

    def _leader_index(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> int | None:
        for key, value in metadata or ():
            if key == LEADER_HEADER:
                value = value.decode() if isinstance(value, bytes) else value
                for i, ep in enumerate(self._endpoints):
                    if ep.hostport == value:
                        return i
        return None

    async def put_blob(self, data: bytes) -> StoredBlob:
        """Stores ``data`` (a tar archive, at most 64 MiB) in the cluster's blob store, copied
        to several nodes before it answers: what an app spec's function ``code`` names. A blob
        no deployed spec names is collected after a while."""
        chunks = [data[i : i + _BLOB_CHUNK] for i in range(0, len(data), _BLOB_CHUNK)] or [b""]

        async def attempt(_: int, ep: _Endpoint) -> Any:
            msgs = (pb.BlobUpload(data=c) for c in chunks)
            try:
                return await ep.control.PutBlob(msgs, timeout=self.request_timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None

        reply = await self.attempts(attempt)
        return StoredBlob(sha256=reply.sha256, size=reply.size, nodes=list(reply.nodes))

    # --- tokens and cluster -------------------------------------------------------------

    async def bootstrap_token(self, name: str = "admin") -> NewToken:
        """Creates the first token of a cluster that has none (no token needed); refused
        (:class:`~flotilla.AlreadyExists`) once any token exists. Safe to retry: the request id,
        drawn once, makes every attempt yield the same token."""
        req = pb.CreateTokenRequest(name=name, request_id=secrets.token_hex(32))

        async def attempt(_: int, ep: _Endpoint) -> pb.CreatedToken:
            try:
                return await ep.bootstrap.BootstrapToken(req, timeout=self.request_timeout)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None

        return NewToken.from_pb(await self.attempts(attempt))

    async def create_token(self, name: str) -> NewToken:
        """Creates an API token; its secret is in the reply only. Safe to retry, like
        :meth:`bootstrap_token`."""
        req = pb.CreateTokenRequest(name=name, request_id=secrets.token_hex(32))
        return NewToken.from_pb(await self.control("CreateToken", req))

    async def list_tokens(self) -> list[TokenInfo]:
        """Every token (revoked ones too), without secrets."""
        reply = await self.control("ListTokens", pb.ListTokensRequest())
        return [TokenInfo.from_pb(t) for t in reply.tokens]

    async def revoke_token(self, id: str, *, force: bool = False) -> TokenInfo:
        """Revokes a token on every node. Revoking the last live token needs ``force``."""
        return TokenInfo.from_pb(await self.control("RevokeToken", pb.RevokeTokenRequest(id=id, force=force)))

    async def cluster_status(self) -> ClusterStatus:
        """Leader, term and nodes, as the answering node sees them."""
        return ClusterStatus.from_pb(await self.control("ClusterStatus", pb.ClusterStatusRequest()))

    async def add_node(self, id: int, addr: str) -> Membership:
        """Adds node ``id``, reachable at ``addr`` (``HOST:PORT``), as a voter once it has
        caught up with the log."""
        return Membership.from_pb(await self.control("AddNode", pb.AddNodeRequest(id=id, addr=addr)))

    async def remove_node(self, id: int) -> Membership:
        """Removes node ``id`` from the cluster's members."""
        return Membership.from_pb(await self.control("RemoveNode", pb.RemoveNodeRequest(id=id)))


def _read_ca(tls_ca: str | bytes | None) -> bytes | None:
    """The CA certificate: PEM bytes as given, or read from a path."""
    if tls_ca is None or isinstance(tls_ca, bytes):
        return tls_ca
    try:
        with open(tls_ca, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument("tls_ca: cannot read %s: %s" % (tls_ca, e)) from None



_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()


def default_client() -> AsyncClient:
    """The client made from the environment (``FLOTILLA_ENDPOINT``, ``FLOTILLA_TOKEN``,
    ``FLOTILLA_TLS_CA``), one per event loop: gRPC channels belong to the loop they run on."""
    loop = asyncio.get_running_loop()
    if loop not in _defaults:
        _defaults[loop] = AsyncClient()
    return _defaults[loop]
