"""The event loop behind the sync API.

The sync API is a thin layer over :mod:`flotilla.aio`: one daemon thread per process runs an
asyncio loop, every sync call submits its coroutine there and blocks on the result. gRPC's
asyncio channels belong to the loop they were made on, so every sync client's channels live
on this one loop; the caller's own threads (and any loop they run) are never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="flotilla-sync", daemon=True).start()
            _loop = loop
        return _loop


def run(aw: Awaitable[T]) -> T:
    """Runs ``aw`` on the SDK's loop and returns its result (or raises its exception).
    An interrupt (Ctrl-C) while waiting cancels it."""
    loop = _get_loop()
    coro = aw if isinstance(aw, Coroutine) else _await(aw)
    if threading.current_thread().name == "flotilla-sync":
        coro.close()
        raise RuntimeError("the sync flotilla API cannot be called from its own loop; use flotilla.aio")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except (KeyboardInterrupt, concurrent.futures.CancelledError):
        future.cancel()
        raise


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """The items of ``agen``, each awaited on the SDK's loop. Closing the iterator (or
    leaving a ``for`` early) closes ``agen`` there."""
    try:
        while True:
            try:
                yield run(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        close = getattr(agen, "aclose", None)
        if close is not None:
            run(close())


async def _await(aw: Awaitable[T]) -> T:
    return await aw
