"""The asyncio twin, flotilla.aio: the same calls as coroutines, on the caller's own loop."""

from __future__ import annotations

import asyncio

import pytest

import flotilla.aio as fa
from conftest import Cluster


def test_sandboxes_functions_and_apps_from_asyncio(cluster: Cluster, uid: str) -> None:
    async def main() -> None:
        async with fa.AsyncClient(cluster.endpoints, token=cluster.token) as c:
            sb = await fa.Sandbox.create(image="flotilla/busybox", cpu=0.1, memory=64, timeout=120,
                                         tags={"aio": uid}, client=c)
            try:
                p = await sb.exec("sh", "-c", "echo one; echo two >&2; read x; echo got $x; exit 4")
                assert await p.stdout.readline() == "one\n"
                await p.stdin.write(b"input\n")
                assert [line async for line in p.stdout] == ["got input\n"]
                assert await p.stderr.read() == "two\n"
                assert await p.wait() == 4
                await sb.files.write("/work/f", b"async bytes")
                assert await sb.files.read("/work/f") == b"async bytes"
                listed = await fa.Sandbox.list(tags={"aio": uid}, client=c)
                assert [s.object_id for s in listed] == [sb.object_id]
                # Several execs at once on one loop.
                procs = await asyncio.gather(*(sb.exec("echo", str(i)) for i in range(5)))
                assert [await q.stdout.read() for q in procs] == ["%d\n" % i for i in range(5)]
                snap = await sb.snapshot_filesystem()
                assert (await fa.get_snapshot(snap.id, client=c)).state == "ready"
            finally:
                await sb.terminate()
            with pytest.raises(fa.NotFound):
                await fa.Sandbox.from_id("sb-missing-" + uid, client=c)

            app = await fa.deploy({"name": "pyaio-" + uid, "functions": {"rev": {
                "image": "flotilla/busybox", "command": ["rev"], "cpu": 0.1, "memory_mib": 64}}}, client=c)
            try:
                f = fa.Function.lookup(app.name, "rev", client=c)
                assert await f.remote(b"abc") == b"cba"
                call = await f.spawn(b"xyz")
                assert await call.get(timeout=60) == b"zyx"
                assert [out async for out in f.map([b"12", b"34", b"56"], parallelism=2)] == [b"21", b"43", b"65"]
                assert app.name in [a.name for a in await fa.list_apps(client=c)]
                assert (await fa.get_app(app.name, client=c)).functions == ["rev"]
                assert (await fa.stop_app(app.name, client=c)).state == "stopped"
            finally:
                await fa.remove_app(app.name, client=c)
            with pytest.raises(fa.NotFound):
                await fa.Function.lookup(app.name, "rev", client=c).remote(b"x")

    asyncio.run(main())


def test_the_default_async_client_reads_the_environment(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_ENDPOINT", cluster.endpoints[2])
    monkeypatch.setenv("FLOTILLA_TOKEN", cluster.token)

    async def main() -> None:
        assert fa.default_client().endpoints == [cluster.endpoints[2]]
        status = await fa.default_client().cluster_status()
        assert status.leader is not None and len(status.nodes) == 3
        await fa.default_client().close()

    asyncio.run(main())
