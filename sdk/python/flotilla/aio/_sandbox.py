"""Sandboxes for asyncio code: create (every option), look up, list by tag, exec with streamed
output and stdin, files in and out, snapshots of each kind, terminate.

Exec runs over the Worker service's bidirectional ``Exec`` stream. The exec id is chosen once,
here; if the stream cannot be opened on one endpoint the next is tried with the same id, and
a node never runs one id twice. A reader task splits the output into the process's
``stdout`` and ``stderr`` streams as it arrives, so either can be read while the other
accumulates.
"""

from __future__ import annotations

import asyncio
import io
import math
import posixpath
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc

from ..errors import Error, FailedPrecondition, InvalidArgument, Unavailable, from_rpc_error
from ..records import LogLine, SandboxInfo, SnapshotInfo, SnapshotProgress
from ..v1 import control_pb2 as pb
from ..v1 import worker_pb2 as wpb
from ._client import AsyncClient, _Endpoint, default_client
from ._logs import sandbox_logs

# A snapshot's progress callback.
Progress = Callable[[SnapshotProgress], None]
# Archive chunks sent per PutArchive message.
_CHUNK = 1 << 20
# The server holds a create with wait until the sandbox runs (at most 120 s).
_CREATE_WAIT_S = 130.0


def _whole_seconds(t: float | None, what: str) -> int:
    """A timeout in the API's whole seconds, rounded up (so 0.5 s is not "none")."""
    if t is None:
        return 0
    if not isinstance(t, (int, float)) or t < 0 or math.isnan(t):
        raise InvalidArgument("%s: must be a number of seconds >= 0 (got %r)" % (what, t))
    return math.ceil(t)


class StreamReader:
    """One output stream of an exec (its stdout or its stderr), as text.

    Iterate it for lines (``async for line in p.stdout``; each ends with ``\\n`` except
    perhaps the last), or :meth:`read` everything up to the end."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._error: Error | None = None
        self._changed = asyncio.Event()

    def _feed(self, data: bytes) -> None:
        self._buf.extend(data)
        self._changed.set()

    def _close(self, error: Error | None = None) -> None:
        self._eof, self._error = True, error
        self._changed.set()

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def read_bytes(self) -> bytes:
        """Everything up to the end of the stream, as bytes."""
        while not self._eof:
            await self._wait()
        if self._error is not None:
            raise self._error
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def read(self) -> str:
        """Everything up to the end of the stream, decoded as UTF-8."""
        return (await self.read_bytes()).decode(errors="replace")

    async def readline(self) -> str:
        """The next line (with its ``\\n``), or ``""`` at the end."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0 or self._eof:
                if self._error is not None and i < 0:
                    raise self._error
                end = i + 1 if i >= 0 else len(self._buf)
                line = bytes(self._buf[:end])
                del self._buf[:end]
                return line.decode(errors="replace")
            await self._wait()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while line := await self.readline():
            yield line


class StdinWriter:
    """The stdin of an exec."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._closed = False

    async def write(self, data: bytes | str) -> None:
        """Sends ``data`` (str is encoded as UTF-8) to the process's stdin."""
        if self._closed:
            raise FailedPrecondition("stdin is closed")
        if isinstance(data, str):
            data = data.encode()
        if self._call.done():
            raise FailedPrecondition("the exec has ended")
        try:
            await self._call.write(wpb.ExecInput(stdin=bytes(data)))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            raise FailedPrecondition("the exec has ended: %s" % e) from None

    async def write_eof(self) -> None:
        """Closes stdin: the process reads end-of-file. Closing twice is a no-op."""
        if self._closed:
            return
        self._closed = True
        # A half-close is stdin's end-of-file for the server. It is not a ``stdin_eof`` message:
        # grpcio turns a message written after the server has already ended the call (an exec
        # refused at once, say) into a made-up INTERNAL status that hides the server's own.
        try:
            await self._call.done_writing()
        except Exception:  # noqa: BLE001 - the call has ended; the reader reports how
            pass


class ContainerProcess:
    """A command running in a sandbox: :attr:`stdout`, :attr:`stderr`, :attr:`stdin`, and
    :meth:`wait` for its exit code."""

    def __init__(self, call: Any, exec_id: str) -> None:
        self.exec_id = exec_id
        """The exec's id; a retry with the same id does not run the command again."""
        self.stdout = StreamReader()
        """The process's standard output."""
        self.stderr = StreamReader()
        """The process's standard error."""
        self.stdin = StdinWriter(call)
        """The process's standard input."""
        self.returncode: int | None = None
        """The exit code once the process has ended (124 on exec timeout, 128+N on signal N)."""
        self._call = call
        self._error: Error | None = None
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        error: Error | None = None
        try:
            async for msg in self._call:
                which = msg.WhichOneof("output")
                if which == "stdout":
                    self.stdout._feed(msg.stdout)
                elif which == "stderr":
                    self.stderr._feed(msg.stderr)
                elif which == "exit":
                    self.returncode = msg.exit
            if self.returncode is None:
                error = Unavailable("the exec stream ended before the exit code")
        except grpc.aio.AioRpcError as e:
            # The exit code is the server's last message: a status clobbered after it (a stdin
            # write racing the process's end) does not undo an exec that ran to its end.
            if self.returncode is None:
                error = from_rpc_error(e)
        self._error = error
        self.stdout._close(error)
        self.stderr._close(error)

    async def wait(self) -> int:
        """Closes stdin, waits for the process to end and returns its exit code. Output not
        read yet stays readable. Raises the SDK error if the exec failed (e.g.
        :class:`~flotilla.NotFound` for a sandbox that has ended)."""
        await self.stdin.write_eof()
        await asyncio.shield(self._reader)
        if self._error is not None:
            raise self._error
        assert self.returncode is not None
        return self.returncode


class FileAccess:
    """Files of one sandbox (``sandbox.files``): whole files in and out, any absolute path
    the sandbox can write (``/work`` always)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    async def write(self, path: str, data: bytes | str) -> None:
        """Writes ``data`` to the file ``path`` (absolute; its folder must exist), replacing it."""
        folder, name = _split(path)
        if isinstance(data, str):
            data = data.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        await self._sb.put_archive(folder, buf.getvalue())

    async def read(self, path: str) -> bytes:
        """The contents of the file ``path`` (absolute)."""
        _split(path)
        tar = await self._sb.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            for member in t:
                if member.isfile():
                    f = t.extractfile(member)
                    assert f is not None
                    return f.read()
        raise InvalidArgument("path: %s is not a regular file" % path)


def _split(path: str) -> tuple[str, str]:
    if not path.startswith("/") or path.endswith("/"):
        raise InvalidArgument("path: must be an absolute file path (got %r)" % path)
    folder, name = posixpath.split(posixpath.normpath(path))
    return folder, name


class Sandbox:
    """A handle on one sandbox, for asyncio code."""

    def __init__(self, client: AsyncClient, info: SandboxInfo) -> None:
        self.client = client
        """The client this handle uses."""
        self.object_id = info.id
        """``sb-…``"""
        self.info = info
        """The record as of the last call that returned it."""
        self.files = FileAccess(self)
        """Files of the sandbox: ``await sb.files.write(path, data)``, ``await sb.files.read(path)``."""

    def __repr__(self) -> str:
        return "Sandbox(%s, %s)" % (self.object_id, self.info.state)

    @classmethod
    async def create(
        cls,
        *command: str,
        client: AsyncClient | None = None,
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
        ``wait`` (the default), returns once it runs.

        ``cpu`` in cores and ``memory`` in MiB (0: the node's defaults, 1 core and 512 MiB);
        ``gpu`` as ``MODEL:N`` or ``any:N``; ``timeout`` / ``idle_timeout`` in seconds (None:
        none); ``runtime`` ``runc`` or ``runsc``; ``from_snapshot`` a snapshot (or its id) to
        restore files, and for a memory snapshot processes too; ``snapshot_every`` seconds
        between automatic filesystem snapshots; ``restore_on_failure`` brings it back on
        another node if its node dies. A sandbox that fails to start raises
        :class:`~flotilla.FailedPrecondition` with the reason.
        """
        client = client or default_client()
        snap = from_snapshot.id if isinstance(from_snapshot, SnapshotInfo) else from_snapshot
        spec = pb.SandboxSpec(
            image=image,
            command=list(command),
            env=dict(env or {}),
            cpu=float(cpu),
            memory_mib=int(memory),
            timeout_s=_whole_seconds(timeout, "timeout"),
            idle_timeout_s=_whole_seconds(idle_timeout, "idle_timeout"),
            block_network=block_network,
            runtime=runtime,
            tags=dict(tags or {}),
            restore_on_failure=restore_on_failure,
            snapshot_every_s=_whole_seconds(snapshot_every, "snapshot_every"),
        )
        if workdir is not None:
            spec.workdir = workdir
        if gpu is not None:
            spec.gpu = gpu
        if snap is not None:
            spec.from_snapshot = snap
        req = pb.CreateSandboxRequest(spec=spec, wait_running=wait, request_id=str(uuid.uuid4()))
        if name is not None:
            req.name = name
        info = SandboxInfo.from_pb(await client.control("CreateSandbox", req, timeout=_CREATE_WAIT_S))
        if info.state == "failed":
            raise FailedPrecondition(
                "sandbox %s failed to start: %s" % (info.id, info.reason or "unknown reason"))
        return cls(client, info)

    @classmethod
    async def from_id(cls, id: str, *, client: AsyncClient | None = None) -> Sandbox:
        """The sandbox with this id (``sb-…``) or name."""
        client = client or default_client()
        return cls(client, await _get(client, id))

    @classmethod
    async def list(
        cls, *, tags: Mapping[str, str] | None = None, all: bool = False, client: AsyncClient | None = None
    ) -> list[Sandbox]:
        """Live sandboxes (every one with ``all``), only those with all of ``tags`` if given."""
        client = client or default_client()
        reply = await client.control("ListSandboxes", pb.ListSandboxesRequest(all=all, tags=dict(tags or {})))
        return [cls(client, SandboxInfo.from_pb(s)) for s in reply.sandboxes]

    async def refresh(self) -> SandboxInfo:
        """Fetches the record again and returns it."""
        self.info = await _get(self.client, self.object_id)
        return self.info

    async def wait(self, timeout: float | None = None) -> SandboxInfo:
        """Waits until the sandbox has ended (or ``timeout`` seconds pass; then it is still
        live) and returns its record."""
        secs = _whole_seconds(timeout, "timeout")
        bound = (secs or 3600) + 10
        req = pb.WaitSandboxRequest(id=self.object_id, timeout_s=secs)
        self.info = SandboxInfo.from_pb(await self.client.control("WaitSandbox", req, timeout=bound))
        return self.info

    async def terminate(self) -> SandboxInfo:
        """Ends the sandbox (exit 137). Terminating an ended sandbox is not an error."""
        req = pb.GetSandboxRequest(id=self.object_id)
        self.info = SandboxInfo.from_pb(await self.client.control("TerminateSandbox", req))
        return self.info

    async def exec(
        self,
        *command: str,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        exec_id: str | None = None,
    ) -> ContainerProcess:
        """Starts ``command`` in the sandbox and returns the running process. ``timeout``
        (seconds) kills it with exit code 124. stdin is open until :meth:`ContainerProcess.wait`
        or ``stdin.write_eof()``."""
        if not command:
            raise InvalidArgument("command: at least one argument is required")
        exec_id = exec_id or str(uuid.uuid4())
        start = wpb.ExecStart(
            sandbox_id=self.object_id,
            exec_id=exec_id,
            command=list(command),
            env=dict(env or {}),
            timeout_s=_whole_seconds(timeout, "timeout"),
            stdin=True,
        )
        if workdir is not None:
            start.workdir = workdir

        async def attempt(_: int, ep: _Endpoint) -> ContainerProcess:
            call = ep.worker.Exec(metadata=self.client.metadata)
            try:
                try:
                    await call.write(wpb.ExecInput(start=start))
                except asyncio.InvalidStateError:
                    pass  # the call has already ended: wait_for_connection raises its error
                await call.wait_for_connection()
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None
            return ContainerProcess(call, exec_id)

        return await self.client.attempts(attempt)

    def logs(self, *, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogLine]:
        """The entrypoint's stdout and stderr, timestamped: the lines kept of earlier
        generations (a failed-over or moved sandbox; an ended one's last), then the current
        container's. ``tail`` keeps the last lines of the current container (else of the kept
        ones); with ``follow`` new lines come until the sandbox ends or the iterator is closed."""
        return sandbox_logs(self.client, self.object_id, follow=follow, tail=tail)

    async def put_archive(self, folder: str, tar: bytes) -> int:
        """Extracts a tar archive into ``folder`` (absolute, existing); returns its size."""
        chunks = [tar[i : i + _CHUNK] for i in range(0, len(tar), _CHUNK)] or [b""]

        async def attempt(_: int, ep: _Endpoint) -> int:
            msgs = [wpb.ArchiveChunk(data=c) for c in chunks]
            msgs[0].sandbox_id, msgs[0].path = self.object_id, folder
            try:
                reply = await ep.worker.PutArchive(iter(msgs), metadata=self.client.metadata)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None
            return reply.bytes

        return await self.client.attempts(attempt)

    async def get_archive(self, path: str) -> bytes:
        """A file or folder of the sandbox as a tar archive."""
        req = wpb.GetArchiveRequest(sandbox_id=self.object_id, path=path)

        async def attempt(_: int, ep: _Endpoint) -> bytes:
            out = bytearray()
            try:
                async for chunk in ep.worker.GetArchive(req, metadata=self.client.metadata):
                    out.extend(chunk.data)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None
            return bytes(out)

        return await self.client.attempts(attempt)

    async def snapshot_filesystem(self, *, progress: Progress | None = None) -> SnapshotInfo:
        """Snapshots the sandbox's writable filesystem (``/work``); returns once it is stored
        on its replicas and ready. ``progress`` is called with each step the node reports."""
        return await self._snapshot("fs", "", progress)

    async def snapshot_directory(self, path: str, *, progress: Progress | None = None) -> SnapshotInfo:
        """Snapshots one directory, an absolute path below ``/work``."""
        return await self._snapshot("dir", path, progress)

    async def snapshot_memory(self, *, progress: Progress | None = None) -> SnapshotInfo:
        """Snapshots processes and memory (CRIU) plus the filesystem; the sandbox keeps running.
        Raises :class:`~flotilla.FailedPrecondition` naming what is missing on a node without
        CRIU or an engine without experimental mode."""
        return await self._snapshot("memory", "", progress)

    async def _snapshot(self, kind: str, path: str, progress: Progress | None) -> SnapshotInfo:
        req = wpb.SnapshotRequest(sandbox_id=self.object_id, kind=kind, path=path)

        async def attempt(_: int, ep: _Endpoint) -> str:
            try:
                async for msg in ep.worker.Snapshot(req, metadata=self.client.metadata):
                    if msg.WhichOneof("progress") == "step" and progress is not None:
                        step = msg.step
                        progress(SnapshotProgress(step.phase, step.done_bytes, step.total_bytes))
                    elif msg.WhichOneof("progress") == "done":
                        return msg.done.id
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from None
            raise Unavailable("the snapshot stream ended without a result")

        snap_id = await self.client.attempts(attempt)
        return await get_snapshot(snap_id, client=self.client)


async def _get(client: AsyncClient, id: str) -> SandboxInfo:
    return SandboxInfo.from_pb(await client.control("GetSandbox", pb.GetSandboxRequest(id=id)))


async def get_snapshot(id: str, *, client: AsyncClient | None = None) -> SnapshotInfo:
    """One snapshot by id (``sn-…``)."""
    client = client or default_client()
    return SnapshotInfo.from_pb(await client.control("GetSnapshot", pb.GetSnapshotRequest(id=id)))


async def list_snapshots(sandbox: str | None = None, *, client: AsyncClient | None = None) -> list[SnapshotInfo]:
    """All snapshots, or only those of ``sandbox`` (an id)."""
    client = client or default_client()
    reply = await client.control("ListSnapshots", pb.ListSnapshotsRequest(sandbox=sandbox or ""))
    return [SnapshotInfo.from_pb(s) for s in reply.snapshots]


async def remove_snapshot(id: str, *, client: AsyncClient | None = None) -> SnapshotInfo:
    """Removes a snapshot; every node then frees its blob."""
    client = client or default_client()
    return SnapshotInfo.from_pb(await client.control("RemoveSnapshot", pb.GetSnapshotRequest(id=id)))

