"""Sandboxes through the sync API: create with options, exec (streamed output, stdin, exit
codes, timeouts), files, snapshots of each kind and restores, list by tag, lookups, terminate,
and bad input."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator

import pytest

import flotilla

# Small, so that the session's sandboxes never run the three nodes out of CPU.
SMALL = {"cpu": 0.1, "memory": 64}


@pytest.fixture
def sandbox(client: flotilla.Client) -> Iterator[flotilla.Sandbox]:
    """An idle busybox sandbox, terminated at the end of the test."""
    sb = flotilla.Sandbox.create(image="flotilla/busybox", timeout=300, client=client, **SMALL)
    yield sb
    sb.terminate()


def test_create_with_options_and_exec_sees_them(client: flotilla.Client, uid: str) -> None:
    sb = flotilla.Sandbox.create(
        image="flotilla/busybox",
        name="py-opts-" + uid,
        env={"GREETING": "hello " + uid},
        workdir="/work",
        tags={"suite": "py-" + uid},
        timeout=120,
        idle_timeout=60,
        client=client,
        **SMALL,
    )
    try:
        assert sb.object_id.startswith("sb-")
        assert sb.info.state == "running"
        assert sb.info.name == "py-opts-" + uid
        assert sb.info.tags == {"suite": "py-" + uid}
        assert (sb.info.timeout_s, sb.info.idle_timeout_s) == (120, 60)
        p = sb.exec("sh", "-c", 'echo "$GREETING"; pwd')
        assert p.stdout.read() == "hello %s\n/work\n" % uid
        assert p.wait() == 0
        # Per-exec env and workdir win over the sandbox's.
        p = sb.exec("sh", "-c", 'echo "$GREETING"; pwd', env={"GREETING": "bye"}, workdir="/tmp")
        assert p.stdout.read() == "bye\n/tmp\n"
        assert p.wait() == 0
        # Found by id and by name.
        assert flotilla.Sandbox.from_id(sb.object_id, client=client).info.name == "py-opts-" + uid
        assert flotilla.Sandbox.from_id("py-opts-" + uid, client=client).object_id == sb.object_id
    finally:
        sb.terminate()


def test_exec_streams_stdout_and_stderr_and_returns_the_exit_code(sandbox: flotilla.Sandbox) -> None:
    p = sandbox.exec("sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done; exit 7")
    assert list(p.stdout) == ["out1\n", "out2\n", "out3\n"]
    assert p.stderr.read() == "err1\nerr2\nerr3\n"
    assert p.wait() == 7
    assert p.returncode == 7


def test_exec_output_arrives_while_the_process_runs(sandbox: flotilla.Sandbox) -> None:
    # `cat` echoes each line as it comes: the first line is read back before stdin closes.
    p = sandbox.exec("cat")
    p.stdin.write(b"first\n")
    assert p.stdout.readline() == "first\n"
    p.stdin.write("second\n")
    p.stdin.write_eof()
    assert p.stdout.read() == "second\n"
    assert p.wait() == 0


def test_exec_timeout_and_missing_command(sandbox: flotilla.Sandbox) -> None:
    t = time.monotonic()
    assert sandbox.exec("sleep", "30", timeout=1).wait() == 124
    assert time.monotonic() - t < 15
    assert sandbox.exec("no-such-command").wait() == 127
    with pytest.raises(flotilla.InvalidArgument, match="command"):
        sandbox.exec()


def test_files_round_trip(sandbox: flotilla.Sandbox) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    sandbox.files.write("/work/blob.bin", data)
    assert sandbox.files.read("/work/blob.bin") == data
    sandbox.files.write("/work/a.txt", "text\n")
    p = sandbox.exec("cat", "/work/a.txt")
    assert p.stdout.read() == "text\n"
    # Whole folders move as tar archives.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in (("d/x", b"ex"), ("d/y", b"why")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    assert sandbox.put_archive("/work", buf.getvalue()) == len(buf.getvalue())
    assert sandbox.exec("cat", "/work/d/x", "/work/d/y").stdout.read() == "exwhy"
    with tarfile.open(fileobj=io.BytesIO(sandbox.get_archive("/work/d"))) as tar:
        assert sorted(m.name for m in tar if m.isfile()) == ["d/x", "d/y"]
    with pytest.raises(flotilla.InvalidArgument, match="absolute"):
        sandbox.files.read("relative.txt")
    with pytest.raises(flotilla.NotFound):
        sandbox.files.read("/work/no-such-file")


def test_filesystem_and_directory_snapshots_restore_elsewhere(client: flotilla.Client,
                                                             sandbox: flotilla.Sandbox) -> None:
    sandbox.files.write("/work/state.txt", b"v1")
    sandbox.exec("mkdir", "-p", "/work/keep").wait()
    sandbox.files.write("/work/keep/inner.txt", b"inner")
    steps: list[flotilla.SnapshotProgress] = []
    snap = sandbox.snapshot_filesystem(progress=steps.append)
    assert (snap.kind, snap.state, snap.sandbox) == ("fs", "ready", sandbox.object_id)
    # The node reported its steps: stored, then pushed to another replica.
    phases = [s.phase for s in steps]
    assert phases[0] == "store" and "replicate" in phases, phases
    assert snap.size_bytes > 0 and len(snap.sha256) == 64
    # The record leaves `snapshotting` a moment after the snapshot is ready; a second snapshot
    # before that is refused (FailedPrecondition), so wait for it.
    deadline = time.monotonic() + 30
    while sandbox.refresh().state != "running":
        assert time.monotonic() < deadline, sandbox.info
        time.sleep(0.1)
    dsnap = sandbox.snapshot_directory("/work/keep")
    assert (dsnap.kind, dsnap.path, dsnap.state) == ("dir", "/work/keep", "ready")
    # Changes after the snapshot are not in it.
    sandbox.files.write("/work/state.txt", b"v2")
    assert flotilla.get_snapshot(snap.id, client=client).id == snap.id
    assert {s.id for s in flotilla.list_snapshots(sandbox.object_id, client=client)} >= {snap.id, dsnap.id}

    copy = flotilla.Sandbox.create(from_snapshot=snap, timeout=120, client=client, **SMALL)
    try:
        assert copy.object_id != sandbox.object_id
        assert copy.info.from_snapshot == snap.id
        assert copy.files.read("/work/state.txt") == b"v1"
        assert copy.files.read("/work/keep/inner.txt") == b"inner"
    finally:
        copy.terminate()
    dcopy = flotilla.Sandbox.create(from_snapshot=dsnap.id, timeout=120, client=client, **SMALL)
    try:
        assert dcopy.files.read("/work/keep/inner.txt") == b"inner"
        with pytest.raises(flotilla.NotFound):
            dcopy.files.read("/work/state.txt")
    finally:
        dcopy.terminate()
    assert flotilla.remove_snapshot(dsnap.id, client=client).id == dsnap.id
    with pytest.raises(flotilla.NotFound):
        flotilla.get_snapshot(dsnap.id, client=client)


def test_memory_snapshot_restores_a_running_process(client: flotilla.Client) -> None:
    # A counter that lives only in the shell's memory, written out every 0.2 s.
    counter = "i=0; while true; do i=$((i+1)); echo $i > /work/n; sleep 0.2; done"
    sb = flotilla.Sandbox.create("sh", "-c", counter, timeout=120, client=client, **SMALL)
    try:
        time.sleep(3)
        before = int(sb.files.read("/work/n"))
        snap = sb.snapshot_memory()
        assert (snap.kind, snap.state) == ("memory", "ready")
    finally:
        sb.terminate()
    restored = flotilla.Sandbox.create(from_snapshot=snap, timeout=120, client=client, **SMALL)
    try:
        # The restored shell counts on from where the snapshot froze it: every value it writes
        # is at least the one read before the snapshot, and it keeps counting. A shell started
        # afresh would write 1, 2, 3, ... instead.
        seen: list[int] = []
        deadline = time.monotonic() + 15
        while len(set(seen)) < 3:
            assert time.monotonic() < deadline, "the restored counter does not count: %s" % seen
            text = restored.files.read("/work/n")
            if text:  # empty while the shell rewrites it
                seen.append(int(text))
            time.sleep(0.3)
        assert min(seen) >= before and seen == sorted(seen), (before, seen)
    finally:
        restored.terminate()


def test_list_by_tag_and_terminate(client: flotilla.Client, uid: str) -> None:
    tags = {"batch": "py-" + uid}
    made = [flotilla.Sandbox.create(tags=tags, timeout=120, client=client, **SMALL) for _ in range(2)]
    other = flotilla.Sandbox.create(tags={"batch": "other-" + uid}, timeout=120, client=client, **SMALL)
    try:
        listed = flotilla.Sandbox.list(tags=tags, client=client)
        assert sorted(s.object_id for s in listed) == sorted(s.object_id for s in made)
    finally:
        for sb in made + [other]:
            sb.terminate()
    for sb in made:
        ended = sb.wait(timeout=60)
        assert ended.state == "terminated" and ended.exit_code == 137, ended
    assert flotilla.Sandbox.list(tags=tags, client=client) == []
    assert len(flotilla.Sandbox.list(tags=tags, all=True, client=client)) == 2
    # Terminating again is not an error.
    assert made[0].terminate().state == "terminated"


def test_a_sandbox_whose_command_exits_reports_its_code(client: flotilla.Client) -> None:
    sb = flotilla.Sandbox.create("sh", "-c", "exit 3", client=client, **SMALL)
    assert sb.wait(timeout=30).exit_code == 3


def test_bad_input(client: flotilla.Client) -> None:
    with pytest.raises(flotilla.NotFound):
        flotilla.Sandbox.from_id("sb-does-not-exist", client=client)
    with pytest.raises(flotilla.NotFound):
        flotilla.get_snapshot("sn-does-not-exist", client=client)
    with pytest.raises(flotilla.InvalidArgument, match="cpu"):
        flotilla.Sandbox.create(cpu=-1, client=client)
    with pytest.raises(flotilla.InvalidArgument, match="timeout"):
        flotilla.Sandbox.create(timeout=-5, client=client)
    # An image no node has: the reason, not a hang.
    with pytest.raises(flotilla.FailedPrecondition, match="flotilla/nope"):
        flotilla.Sandbox.create(image="flotilla/nope", client=client, **SMALL)
    with pytest.raises(flotilla.NotFound):
        flotilla.Sandbox.create(from_snapshot="sn-does-not-exist", client=client, **SMALL)


def test_exec_in_an_ended_sandbox_raises(client: flotilla.Client) -> None:
    sb = flotilla.Sandbox.create(client=client, **SMALL)
    sb.terminate()
    with pytest.raises(flotilla.FailedPrecondition, match="terminated"):
        sb.exec("echo", "late").wait()


def test_the_remaining_create_options(client: flotilla.Client, uid: str) -> None:
    # gVisor with no network, the entrypoint given, returning before it runs; automatic
    # snapshots every 5 s and failover on.
    sb = flotilla.Sandbox.create("sh", "-c", "echo up > /work/up; sleep 300", runtime="runsc", block_network=True,
                                 wait=False, snapshot_every=5, restore_on_failure=True, timeout=120, client=client,
                                 **SMALL)
    try:
        assert sb.info.snapshot_every_s == 5 and sb.info.restore_on_failure
        deadline = time.monotonic() + 60
        while sb.refresh().last_snapshot is None:
            assert time.monotonic() < deadline, "no automatic snapshot within 60 s: %s" % sb.info
            time.sleep(0.5)
        assert sb.info.state == "running"
        assert sb.files.read("/work/up") == b"up\n"
        p = sb.exec("sh", "-c", "dmesg 2>/dev/null | head -1; wget -q -T 2 -O- http://1.1.1.1 || echo offline")
        out = p.stdout.read()
        assert "gVisor" in out and out.endswith("offline\n"), out
    finally:
        sb.terminate()
    # No node has a GPU: refused with the reason.
    with pytest.raises(flotilla.NoCapacity, match="no node has 1 free GPUs"):
        flotilla.Sandbox.create(gpu="any:1", client=client, **SMALL)


def test_logs_listed_tailed_and_followed(client: flotilla.Client) -> None:
    # (Lines of stdout and stderr written within microseconds may come in either order.)
    sb = flotilla.Sandbox.create("sh", "-c", "echo one; sleep 0.3; echo two >&2; sleep 2; echo three; sleep 300",
                                 client=client, **SMALL)
    try:
        # Followed: lines as they come, stdout and stderr, with the engine's timestamps.
        follow = sb.logs(follow=True)
        seen = [next(follow) for _ in range(3)]
        follow.close()
        assert [(line.stream, line.text) for line in seen] == [("stdout", "one"), ("stderr", "two"),
                                                              ("stdout", "three")]
        assert all(line.time.endswith("Z") and line.node == sb.info.node for line in seen)
        assert [line.text for line in sb.logs()] == ["one", "two", "three"]
        assert [line.text for line in sb.logs(tail=1)] == ["three"]
    finally:
        sb.terminate()
