"""Logs for asyncio code, as ``flotilla logs`` shows them: a sandbox entrypoint's stdout and
stderr (from any node: the one asked proxies to the one that runs it), and what a function's
processes wrote to stderr (gathered from every node, one call's alone with ``call``).

A listing ends after the kept lines; a follow (``follow=True``) goes on with new lines until
the iterator is closed (``aclose``, or leaving an ``async for`` early), which ends the stream
on the node at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc

from ..errors import from_rpc_error
from ..records import LogLine
from ..v1 import observe_pb2 as opb
from ._client import AsyncClient, _Endpoint


async def _lines(client: AsyncClient, open_stream: Callable[[_Endpoint], Any]) -> AsyncGenerator[LogLine, None]:
    """The stream ``open_stream`` opens on the first endpoint that takes it, as records."""

    async def attempt(_: int, ep: _Endpoint) -> Any:
        call = open_stream(ep)
        try:
            await call.wait_for_connection()
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None
        return call

    call = await client.attempts(attempt)
    try:
        async for msg in call:
            yield LogLine.from_pb(msg)
    except grpc.aio.AioRpcError as e:
        raise from_rpc_error(e) from None
    finally:
        call.cancel()


def sandbox_logs(client: AsyncClient, id: str, *, follow: bool, tail: int | None) -> AsyncGenerator[LogLine, None]:
    """Sandbox ``id``'s entrypoint output (earlier generations' kept lines first): the last
    ``tail`` lines (all when None), then with ``follow`` new ones until the sandbox ends."""
    req = opb.SandboxLogsRequest(id=id, follow=follow)
    if tail is not None:
        req.tail = tail
    return _lines(client, lambda ep: ep.observe.SandboxLogs(req, metadata=client.metadata))


def function_logs(
    client: AsyncClient, app: str, function: str, *, call: str | None, follow: bool, tail: int | None
) -> AsyncGenerator[LogLine, None]:
    """What ``app``/``function``'s processes wrote to stderr on every node (only durable call
    ``call``'s lines when given): the last ``tail`` lines per node, then with ``follow`` new
    ones."""
    req = opb.FunctionLogsRequest(app=app, function=function, follow=follow)
    if tail is not None:
        req.tail = tail
    if call is not None:
        req.call_id = call
    return _lines(client, lambda ep: ep.observe.FunctionLogs(req, metadata=client.metadata))
