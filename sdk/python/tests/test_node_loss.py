"""A node SIGKILLed while it runs a spawned call: the call completes on another node, and the
client, whose first endpoint is the dead node, carries on. The test has its own three-node
cluster, so the session's keeps all its nodes. Membership: the dead node is removed and a new
one added in its place."""

from __future__ import annotations

import time

import flotilla
from conftest import free_port, spawn_node, start_cluster


def test_a_spawned_call_completes_elsewhere_when_its_node_dies() -> None:
    with start_cluster(3) as c, c.client() as client:
        flotilla.deploy({"name": "pyjobs", "functions": {"slow": {
            "image": "flotilla/busybox", "command": ["sh", "-c", "sleep 4; cat"], "cpu": 0.1, "memory_mib": 64,
            "min_containers": 3, "max_containers": 3}}}, client=client)
        deadline = time.monotonic() + 120
        while True:
            (load,) = flotilla.function_status("pyjobs", client=client)
            if sorted(r.node for r in load.replicas if r.state == "ready") == [1, 2, 3]:
                break
            assert time.monotonic() < deadline, "no ready replica on every node: %s\n%s" % (load, c.logs())
            time.sleep(0.2)
        call = flotilla.Function.lookup("pyjobs", "slow", client=client).spawn(b"survivor")
        deadline = time.monotonic() + 60
        while (record := call.info()).state != "running":
            assert time.monotonic() < deadline, "the call never started: %s" % record
            time.sleep(0.1)
        victim = record.node
        assert victim is not None
        c.procs[victim].kill()
        c.procs[victim].wait()
        # A client that tries the dead node first still gets the result, from another node.
        dead_first = [c.endpoints[victim - 1]] + [e for i, e in enumerate(c.endpoints) if i != victim - 1]
        with c.client(*dead_first) as survivor:
            again = flotilla.FunctionCall.from_id(call.object_id, client=survivor)
            assert again.get(timeout=120) == b"survivor"
            final = again.info()
            assert final.node != victim and final.attempt >= 2, final
            membership = survivor.remove_node(victim)
            assert victim not in membership.voters and len(membership.voters) == 2
            assert sorted(n.id for n in survivor.cluster_status().nodes) == sorted({1, 2, 3} - {victim})
            # A fresh node, started waiting for a cluster, joins as a voter.
            addr = "127.0.0.1:%d" % free_port()
            c.procs[4] = spawn_node(c.dir, 4, addr, "--cluster-secret-file", str(c.dir / "secret"))
            assert 4 in survivor.add_node(4, addr).voters
            assert 4 in [n.id for n in survivor.cluster_status().nodes]
