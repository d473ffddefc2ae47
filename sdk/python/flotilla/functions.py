"""Functions of deployed apps, sync: each method runs its :mod:`flotilla.aio` twin on the
SDK's loop thread.

    f = flotilla.Function.lookup("etl", "tick")
    f.remote(b"input")                      # runs now on a warm replica
    call = f.spawn(b"input"); call.get(timeout=30)
    list(f.map([b"a", b"b"], parallelism=8))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from . import _runner
from .aio import _function as aio
from .client import Client, resolve
from .records import CallRecord, LogLine


class Function:
    """A function of a deployed app, by name; nothing is checked until it is called."""

    def __init__(self, inner: aio.Function) -> None:
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def app(self) -> str:
        """The app's name."""
        return self._inner.app

    @property
    def name(self) -> str:
        """The function's name."""
        return self._inner.name

    @classmethod
    def lookup(cls, app: str, name: str, *, client: Client | None = None) -> Function:
        """A handle on function ``name`` of ``app``."""
        return cls(aio.Function(app, name, resolve(client)))

    def is_python(self) -> bool:
        """Whether this is a function of a Python app (pickled arguments and result) rather
        than one declared in TOML (bytes in, bytes out); asks the cluster once."""
        return _runner.run(self._inner.is_python())

    def remote(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Runs the function now on a warm replica and returns its output:
        ``remote(b"input")`` gives bytes for a TOML-declared function, ``remote(*args,
        **kwargs)`` the result of a Python app's function. A failure of the function raises
        :class:`~flotilla.FunctionError` with the reason (a Python function's traceback)."""
        return _runner.run(self._inner.remote(*args, timeout=timeout, **kwargs))

    def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Records a durable call with this input (as for :meth:`remote`) and returns its
        handle at once."""
        return FunctionCall(_runner.run(self._inner.spawn(*args, **kwargs)))

    def map(
        self, inputs: Iterable[Any], *, parallelism: int = 8, return_exceptions: bool = False
    ) -> Iterator[Any]:
        """Calls the function on every input (one argument each), at most ``parallelism`` at
        once, and yields the outputs in the order of the inputs. A failed input raises its
        error, or with ``return_exceptions`` is yielded as the exception."""
        return _runner.iterate(self._inner.map(inputs, parallelism=parallelism, return_exceptions=return_exceptions))

    def logs(self, *, call: str | None = None, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]:
        """What the function's processes wrote to stderr, from every node (only durable call
        ``call``'s lines when given): the last ``tail`` lines per node (all kept when None),
        then with ``follow`` new lines until the iterator is closed."""
        return _runner.iterate(self._inner.logs(call=call, follow=follow, tail=tail))

    def trigger(self) -> CallRecord:
        """Runs a scheduled function now (a durable call with no ``scheduled_at``), not a tick."""
        return _runner.run(self._inner.trigger())


class FunctionCall:
    """A durable call, by id (``fc-…``)."""

    def __init__(self, inner: aio.FunctionCall) -> None:
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def object_id(self) -> str:
        """``fc-…``"""
        return self._inner.object_id

    @classmethod
    def from_id(cls, id: str, *, client: Client | None = None) -> FunctionCall:
        """A handle on the durable call with this id."""
        return cls(aio.FunctionCall(id, resolve(client)))

    def get(self, timeout: float | None = None) -> Any:
        """Waits for the call to end and returns its output (bytes, or a Python app
        function's result); :class:`~flotilla.FunctionError`
        if it failed or was cancelled, :class:`~flotilla.Timeout` if still running after
        ``timeout`` seconds."""
        return _runner.run(self._inner.get(timeout))

    def wait(self, timeout: float = 0) -> CallRecord:
        """Waits up to ``timeout`` seconds for the call to end; its record either way."""
        return _runner.run(self._inner.wait(timeout))

    def info(self) -> CallRecord:
        """The call's record now."""
        return _runner.run(self._inner.info())

    def cancel(self) -> CallRecord:
        """Cancels the call if it has not ended; returns its record."""
        return _runner.run(self._inner.cancel())

    def logs(self, *, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]:
        """What the process that ran this call wrote to stderr (every attempt, on any node);
        with ``follow`` new lines until the iterator is closed."""
        return _runner.iterate(self._inner.logs(follow=follow, tail=tail))
