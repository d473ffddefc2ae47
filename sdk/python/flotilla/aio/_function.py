"""Functions of deployed apps for asyncio code: ``remote`` (a synchronous call on a warm
replica), ``spawn`` (a durable call recorded in the catalog), and ``map`` with bounded
parallelism; :class:`FunctionCall` waits for or cancels a durable call.

A function's own failure arrives as a reply (``ok = false``) or a failed call record, and is
raised as :class:`~flotilla.FunctionError` with the node's reason.

Functions declared in TOML take and return bytes. Functions of Python apps (``flotilla.App``)
take any arguments and return any value, pickled both ways. A handle finds out which kind its
function is from the app's spec, once, on its first call.
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from ..app import is_python_function
from ..errors import FunctionError, InvalidArgument, NotFound
from ..records import CallRecord, LogLine
from ..v1 import control_pb2 as pb
from ._client import AsyncClient, default_client
from ._logs import function_logs

# Longest a single GetCall waits on the server before the SDK asks again.
_GET_POLL_S = 300


class Function:
    """A function of a deployed app, by name; nothing is checked until it is called."""

    def __init__(self, app: str, name: str, client: AsyncClient) -> None:
        self.app = app
        """The app's name."""
        self.name = name
        """The function's name."""
        self.client = client
        """The client this handle uses."""
        self._python: bool | None = None

    def __repr__(self) -> str:
        return "Function(%s/%s)" % (self.app, self.name)

    async def is_python(self) -> bool:
        """Whether this is a function of a Python app (pickled arguments and result) rather
        than one declared in TOML (bytes in, bytes out); asks the cluster once."""
        if self._python is None:
            try:
                app = await self.client.control("GetApp", pb.GetAppRequest(name=self.app))
            except NotFound:
                return False  # the call itself will say what is missing
            spec = json.loads(app.spec_json).get("functions", {}).get(self.name)
            self._python = spec is not None and is_python_function(spec)
        return self._python

    async def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if await self.is_python():
            return pickle.dumps((args, kwargs))
        if kwargs or len(args) > 1:
            raise InvalidArgument("input: %s/%s is declared in TOML and takes one bytes input" % (self.app, self.name))
        data = args[0] if args else b""
        if not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise InvalidArgument("input: %s/%s takes bytes or str (got %s)" % (self.app, self.name, type(data).__name__))
        return data.encode() if isinstance(data, str) else bytes(data)

    @classmethod
    def lookup(cls, app: str, name: str, *, client: AsyncClient | None = None) -> Function:
        """A handle on function ``name`` of ``app``."""
        return cls(app, name, client or default_client())

    async def remote(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Runs the function now on a warm replica (starting one if there is none) and returns
        its output: ``remote(b"input")`` gives bytes for a TOML-declared function,
        ``remote(*args, **kwargs)`` the result of a Python app's function. ``timeout`` bounds
        the whole call, queueing and cold start included (default: the function's own timeout
        plus a margin to start a replica)."""
        data = await self._encode(args, kwargs)
        secs = 0 if timeout is None else max(1, math.ceil(timeout))
        req = pb.CallFunctionRequest(app=self.app, function=self.name, input=data, timeout_s=secs)
        # The server holds the call while it runs: no cut on this side before its own deadline.
        reply = await self.client.control("CallFunction", req, timeout=(timeout or 3600) + 5)
        if not reply.ok:
            raise FunctionError(reply.error)
        return _decode(reply.output, bool(self._python))

    async def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Records a durable call with this input (as for :meth:`remote`) and returns its
        handle at once; the call runs on a node with a replica and is re-run elsewhere if that
        node dies."""
        data = await self._encode(args, kwargs)
        req = pb.SpawnCallRequest(app=self.app, function=self.name, input=data, request_id=str(uuid.uuid4()))
        record = await self.client.control("SpawnCall", req)
        return FunctionCall(record.id, self.client, python=self._python)

    async def map(
        self, inputs: Iterable[Any], *, parallelism: int = 8, return_exceptions: bool = False
    ) -> AsyncGenerator[Any, None]:
        """Calls the function on every input (one argument each), at most ``parallelism`` at
        once, and yields the outputs in the order of the inputs. A failed input raises its error, or with
        ``return_exceptions`` is yielded as the exception."""
        sem = asyncio.Semaphore(max(1, parallelism))
        await self.is_python()  # once, before the inputs run at once

        async def one(data: Any) -> Any:
            async with sem:
                return await self.remote(data)

        tasks = [asyncio.ensure_future(one(i)) for i in inputs]
        try:
            for t in tasks:
                try:
                    yield await t
                except Exception as e:
                    if not return_exceptions:
                        raise
                    yield e
        finally:
            for t in tasks:
                t.cancel()

    def logs(
        self, *, call: str | None = None, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[LogLine]:
        """What the function's processes wrote to stderr, from every node (only durable call
        ``call``'s lines when given): the last ``tail`` lines per node (all kept when None),
        then with ``follow`` new lines until the iterator is closed."""
        return function_logs(self.client, self.app, self.name, call=call, follow=follow, tail=tail)

    async def trigger(self) -> CallRecord:
        """Runs a scheduled function now (a durable call with no ``scheduled_at``), not a tick."""
        req = pb.TriggerScheduleRequest(app=self.app, function=self.name, request_id=str(uuid.uuid4()))
        return CallRecord.from_pb(await self.client.control("TriggerSchedule", req))


class FunctionCall:
    """A durable call, by id (``fc-…``)."""

    def __init__(self, id: str, client: AsyncClient, *, python: bool | None = None) -> None:
        self.object_id = id
        """``fc-…``"""
        self.client = client
        """The client this handle uses."""
        self._python = python

    def __repr__(self) -> str:
        return "FunctionCall(%s)" % self.object_id

    @classmethod
    def from_id(cls, id: str, *, client: AsyncClient | None = None) -> FunctionCall:
        """A handle on the durable call with this id."""
        return cls(id, client or default_client())

    async def get(self, timeout: float | None = None) -> Any:
        """Waits for the call to end and returns its output (bytes, or a Python app function's
        result). Raises
        :class:`~flotilla.FunctionError` if it failed or was cancelled, and
        :class:`~flotilla.Timeout` if it is still running after ``timeout`` seconds."""
        record = await self.wait(timeout if timeout is not None else _GET_POLL_S)
        while timeout is None and not record.is_final:
            record = await self.wait(_GET_POLL_S)
        output = record.result()
        if self._python is None:
            self._python = await Function(record.app, record.function, self.client).is_python()
        return _decode(output, self._python)

    async def wait(self, timeout: float = 0) -> CallRecord:
        """Waits up to ``timeout`` seconds for the call to end; its record either way."""
        secs = max(0, math.ceil(timeout))
        req = pb.GetCallRequest(id=self.object_id, timeout_s=secs)
        return CallRecord.from_pb(await self.client.control("GetCall", req, timeout=secs + 10))

    async def info(self) -> CallRecord:
        """The call's record now."""
        return await self.wait(0)

    async def cancel(self) -> CallRecord:
        """Cancels the call if it has not ended; returns its record."""
        return CallRecord.from_pb(await self.client.control("CancelCall", pb.CancelCallRequest(id=self.object_id)))

    async def logs(self, *, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogLine]:
        """What the process that ran this call wrote to stderr (every attempt, on any node);
        with ``follow`` new lines until the iterator is closed."""
        record = await self.info()
        lines = function_logs(self.client, record.app, record.function, call=self.object_id, follow=follow, tail=tail)
        try:
            async for line in lines:
                yield line
        finally:
            await lines.aclose()


def _decode(output: bytes, python: bool) -> Any:
    """The output as the caller gets it: bytes, or a Python function's unpickled result."""
    if not python:
        return output
    try:
        return pickle.loads(output)
    except Exception as e:
        raise FunctionError("cannot unpickle the result (client Python %d.%d): %s: %s"
                            % (sys.version_info[0], sys.version_info[1], type(e).__name__, e)) from None
