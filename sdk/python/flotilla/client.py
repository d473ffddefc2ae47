"""The sync client: a :class:`~flotilla.aio.AsyncClient` driven from the SDK's loop thread
(see ``_runner``). Endpoint rotation, retries, tokens and TLS are the async client's."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from . import _runner
from .aio._client import AsyncClient
from .records import ClusterStatus, Membership, NewToken, StoredBlob, TokenInfo


class Client:
    """A client of one Flotilla cluster. Share one per program; it is thread-safe.

    Arguments default to the environment, as the CLI's do: ``FLOTILLA_ENDPOINT`` (a comma-
    separated list, tried in turn; default ``http://127.0.0.1:7100``), ``FLOTILLA_TOKEN``,
    ``FLOTILLA_TLS_CA`` (path of a PEM CA certificate for ``https://`` endpoints).
    ``request_timeout`` bounds one request on one endpoint (waits set their own);
    ``retry_for`` is how long a request is retried across endpoints while they are
    unavailable (nodes down, an election)."""

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        tls_ca: str | bytes | None = None,
        request_timeout: float = 60.0,
        retry_for: float = 10.0,
    ) -> None:
        async def make() -> AsyncClient:
            return AsyncClient(
                endpoints, token=token, tls_ca=tls_ca, request_timeout=request_timeout, retry_for=retry_for
            )

        self.aio: AsyncClient = _runner.run(make())
        """The asyncio client underneath (usable only on the SDK's own loop)."""

    @property
    def endpoints(self) -> list[str]:
        """The endpoints this client tries, in order."""
        return self.aio.endpoints

    def close(self) -> None:
        """Closes the connections; the client must not be used afterwards."""
        _runner.run(self.aio.close())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cluster_status(self) -> ClusterStatus:
        """Leader, term and nodes, as the answering node sees them."""
        return _runner.run(self.aio.cluster_status())

    def add_node(self, id: int, addr: str) -> Membership:
        """Adds node ``id``, reachable at ``addr`` (``HOST:PORT``), as a voter once it has
        caught up with the log."""
        return _runner.run(self.aio.add_node(id, addr))

    def remove_node(self, id: int) -> Membership:
        """Removes node ``id`` from the cluster's members."""
        return _runner.run(self.aio.remove_node(id))

    def put_blob(self, data: bytes) -> StoredBlob:
        """Stores ``data`` (a tar archive, at most 64 MiB) in the cluster's blob store, copied
        to several nodes: what an app spec's function ``code`` names."""
        return _runner.run(self.aio.put_blob(data))

    def bootstrap_token(self, name: str = "admin") -> NewToken:
        """Creates the first token of a cluster that has none (needs no token); refused with
        :class:`~flotilla.AlreadyExists` once any token exists."""
        return _runner.run(self.aio.bootstrap_token(name))

    def create_token(self, name: str) -> NewToken:
        """Creates an API token; its secret is in the reply only."""
        return _runner.run(self.aio.create_token(name))

    def list_tokens(self) -> list[TokenInfo]:
        """Every token (revoked ones too), without secrets."""
        return _runner.run(self.aio.list_tokens())

    def revoke_token(self, id: str, *, force: bool = False) -> TokenInfo:
        """Revokes a token on every node; the last live token needs ``force``."""
        return _runner.run(self.aio.revoke_token(id, force=force))


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client made from the environment on first use, shared by calls given no client."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def resolve(client: Client | None) -> AsyncClient:
    """The async client of ``client``, or of the default client."""
    return (client or default_client()).aio
