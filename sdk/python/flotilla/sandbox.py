"""Sandboxes, sync: each method runs its :mod:`flotilla.aio` twin on the SDK's loop thread.

    sb = flotilla.Sandbox.create(image="flotilla/busybox", timeout=300)
    p = sb.exec("sh", "-c", "echo hi")
    for line in p.stdout:
        print(line, end="")
    print(p.wait())
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from . import _runner
from .aio import _sandbox as aio
from .client import Client, resolve
from .records import LogLine, SandboxInfo, SnapshotInfo, SnapshotProgress


class StreamReader:
    """One output stream of an exec, as text: iterate it for lines, or :meth:`read` it all."""

    def __init__(self, inner: aio.StreamReader) -> None:
        self._inner = inner

    def read(self) -> str:
        """Everything up to the end of the stream, decoded as UTF-8."""
        return _runner.run(self._inner.read())

    def read_bytes(self) -> bytes:
        """Everything up to the end of the stream, as bytes."""
        return _runner.run(self._inner.read_bytes())

    def readline(self) -> str:
        """The next line (with its ``\\n``), or ``""`` at the end."""
        return _runner.run(self._inner.readline())

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line


class StdinWriter:
    """The stdin of an exec."""

    def __init__(self, inner: aio.StdinWriter) -> None:
        self._inner = inner

    def write(self, data: bytes | str) -> None:
        """Sends ``data`` (str is encoded as UTF-8) to the process's stdin."""
        _runner.run(self._inner.write(data))

    def write_eof(self) -> None:
        """Closes stdin: the process reads end-of-file."""
        _runner.run(self._inner.write_eof())


class ContainerProcess:
    """A command running in a sandbox: :attr:`stdout`, :attr:`stderr`, :attr:`stdin`, and
    :meth:`wait` for its exit code."""

    def __init__(self, inner: aio.ContainerProcess) -> None:
        self._inner = inner
        self.stdout = StreamReader(inner.stdout)
        """The process's standard output."""
        self.stderr = StreamReader(inner.stderr)
        """The process's standard error."""
        self.stdin = StdinWriter(inner.stdin)
        """The process's standard input."""

    @property
    def exec_id(self) -> str:
        """The exec's id; a retry with the same id does not run the command again."""
        return self._inner.exec_id

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self._inner.returncode

    def wait(self) -> int:
        """Closes stdin, waits for the process to end and returns its exit code (124 on exec
        timeout, 128+N on signal N). Output not read yet stays readable."""
        return _runner.run(self._inner.wait())


class FileAccess:
    """Files of one sandbox: ``sb.files.write(path, data)``, ``sb.files.read(path)``."""

    def __init__(self, inner: aio.FileAccess) -> None:
        self._inner = inner

    def write(self, path: str, data: bytes | str) -> None:
        """Writes ``data`` to the file ``path`` (absolute; its folder must exist), replacing it."""
        _runner.run(self._inner.write(path, data))

    def read(self, path: str) -> bytes:
        """The contents of the file ``path`` (absolute)."""
        return _runner.run(self._inner.read(path))


class Sandbox:
    """A handle on one sandbox."""

    def __init__(self, inner: aio.Sandbox) -> None:
        self._inner = inner
        self.files = FileAccess(inner.files)
        """Files of the sandbox."""

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def object_id(self) -> str:
        """``sb-…``"""
        return self._inner.object_id

    @property
    def info(self) -> SandboxInfo:
        """The record as of the last call that returned it."""
        return self._inner.info

    @classmethod
    def create(
        cls,
        *command: str,
        client: Client | None = None,
        image: str = "flotilla/busybox",
        name: str | None = None,
        cpu: float = 0.0,
        memory: int = 0,
        gpu: str | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        block_network: bool = False,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        from_snapshot: SnapshotInfo | str | None = None,
        runtime: str = "",
        snapshot_every: float | None = None,
        restore_on_failure: bool = False,
        wait: bool = True,
    ) -> Sandbox:
        """Creates a sandbox running ``command`` (none: it idles, waiting for execs) and, with
        ``wait`` (the default), returns once it runs. See :meth:`flotilla.aio.Sandbox.create`
        for every option."""
        aclient = resolve(client)
        return cls(
            _runner.run(
                aio.Sandbox.create(
                    *command,
                    client=aclient,
                    image=image,
                    name=name,
                    cpu=cpu,
                    memory=memory,
                    gpu=gpu,
                    timeout=timeout,
                    idle_timeout=idle_timeout,
                    block_network=block_network,
                    workdir=workdir,
                    env=env,
                    tags=tags,
                    from_snapshot=from_snapshot,
                    runtime=runtime,
                    snapshot_every=snapshot_every,
                    restore_on_failure=restore_on_failure,
                    wait=wait,
                )
            )
        )

    @classmethod
    def from_id(cls, id: str, *, client: Client | None = None) -> Sandbox:
        """The sandbox with this id (``sb-…``) or name."""
        return cls(_runner.run(aio.Sandbox.from_id(id, client=resolve(client))))

    @classmethod
    def list(
        cls, *, tags: Mapping[str, str] | None = None, all: bool = False, client: Client | None = None
    ) -> list[Sandbox]:
        """Live sandboxes (every one with ``all``), only those with all of ``tags`` if given."""
        return [cls(s) for s in _runner.run(aio.Sandbox.list(tags=tags, all=all, client=resolve(client)))]

    def refresh(self) -> SandboxInfo:
        """Fetches the record again and returns it."""
        return _runner.run(self._inner.refresh())

    def wait(self, timeout: float | None = None) -> SandboxInfo:
        """Waits until the sandbox has ended (or ``timeout`` seconds pass) and returns its record."""
        return _runner.run(self._inner.wait(timeout))

    def terminate(self) -> SandboxInfo:
        """Ends the sandbox (exit 137). Terminating an ended sandbox is not an error."""
        return _runner.run(self._inner.terminate())

    def exec(
        self,
        *command: str,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        exec_id: str | None = None,
    ) -> ContainerProcess:
        """Starts ``command`` in the sandbox and returns the running process; ``timeout``
        (seconds) kills it with exit code 124."""
        proc = self._inner.exec(*command, workdir=workdir, env=env, timeout=timeout, exec_id=exec_id)
        return ContainerProcess(_runner.run(proc))

    def logs(self, *, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]:
        """The entrypoint's stdout and stderr, timestamped: the lines kept of earlier
        generations (a failed-over or moved sandbox; an ended one's last), then the current
        container's. ``tail`` keeps the last lines of the current container (else of the kept
        ones); with ``follow`` new lines come until the sandbox ends or the iterator is closed."""
        return _runner.iterate(self._inner.logs(follow=follow, tail=tail))

    def put_archive(self, folder: str, tar: bytes) -> int:
        """Extracts a tar archive into ``folder`` (absolute, existing); returns its size."""
        return _runner.run(self._inner.put_archive(folder, tar))

    def get_archive(self, path: str) -> bytes:
        """A file or folder of the sandbox as a tar archive."""
        return _runner.run(self._inner.get_archive(path))

    def snapshot_filesystem(self, *, progress: Callable[[SnapshotProgress], None] | None = None) -> SnapshotInfo:
        """Snapshots the sandbox's writable filesystem (``/work``); returns once it is stored
        on its replicas and ready. ``progress`` is called with each step the node reports
        (on the SDK's loop thread)."""
        return _runner.run(self._inner.snapshot_filesystem(progress=progress))

    def snapshot_directory(
        self, path: str, *, progress: Callable[[SnapshotProgress], None] | None = None
    ) -> SnapshotInfo:
        """Snapshots one directory, an absolute path below ``/work``."""
        return _runner.run(self._inner.snapshot_directory(path, progress=progress))

    def snapshot_memory(self, *, progress: Callable[[SnapshotProgress], None] | None = None) -> SnapshotInfo:
        """Snapshots processes and memory plus the filesystem; the sandbox keeps running."""
        return _runner.run(self._inner.snapshot_memory(progress=progress))


def get_snapshot(id: str, *, client: Client | None = None) -> SnapshotInfo:
    """One snapshot by id (``sn-…``)."""
    return _runner.run(aio.get_snapshot(id, client=resolve(client)))


def list_snapshots(sandbox: str | None = None, *, client: Client | None = None) -> list[SnapshotInfo]:
    """All snapshots, or only those of ``sandbox`` (an id)."""
    return list(_runner.run(aio.list_snapshots(sandbox, client=resolve(client))))


def remove_snapshot(id: str, *, client: Client | None = None) -> SnapshotInfo:
    """Removes a snapshot; every node then frees its blob."""
    return _runner.run(aio.remove_snapshot(id, client=resolve(client)))
