"""Records the cluster returns (sandboxes, snapshots, calls, apps, schedules, tokens, nodes),
as plain dataclasses shared by the sync API and :mod:`flotilla.aio`.

Each has ``from_pb``, its one conversion from the wire message; optional proto fields become
``None`` when unset. Times are Unix milliseconds, as on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import FunctionError, Timeout


def _opt(msg: Any, name: str) -> Any:
    """The value of optional field ``name``, or None when unset."""
    return getattr(msg, name) if msg.HasField(name) else None


@dataclass
class SandboxInfo:
    """A sandbox as the cluster records it."""

    id: str
    name: str | None
    node: int
    """Node that hosts it."""
    state: str
    """``pending``, ``running``, ``snapshotting``, ``restoring``, ``terminated`` or ``failed``."""
    image: str
    generation: int
    exit_code: int | None
    """The command's own exit code, 124 on timeout, 137 when terminated."""
    reason: str | None
    """Why it ended, or why it failed to start."""
    last_snapshot: str | None
    tags: dict[str, str]
    timeout_s: int
    idle_timeout_s: int
    from_snapshot: str | None
    restore_on_failure: bool
    snapshot_every_s: int
    gpu: str | None
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None

    @classmethod
    def from_pb(cls, s: Any) -> SandboxInfo:
        """From a ``flotilla.v1.control.Sandbox`` message."""
        spec = s.spec
        return cls(
            id=s.id,
            name=_opt(s, "name"),
            node=s.node,
            state=s.state,
            image=s.image,
            generation=s.generation,
            exit_code=_opt(s, "exit_code"),
            reason=_opt(s, "reason"),
            last_snapshot=_opt(s, "last_snapshot"),
            tags=dict(spec.tags),
            timeout_s=spec.timeout_s,
            idle_timeout_s=spec.idle_timeout_s,
            from_snapshot=_opt(spec, "from_snapshot"),
            restore_on_failure=spec.restore_on_failure,
            snapshot_every_s=spec.snapshot_every_s,
            gpu=_opt(spec, "gpu"),
            created_at_ms=s.created_at_ms,
            started_at_ms=_opt(s, "started_at_ms"),
            finished_at_ms=_opt(s, "finished_at_ms"),
        )


@dataclass
class SnapshotInfo:
    """A snapshot as the cluster records it."""

    id: str
    """``sn-…``"""
    kind: str
    """``fs``, ``dir`` or ``memory``."""
    sandbox: str
    path: str | None
    """The directory of a ``dir`` snapshot."""
    size_bytes: int
    sha256: str
    replicas: list[int]
    """Nodes holding a verified copy."""
    state: str
    """``pending``, ``ready``, ``lost`` or ``failed``."""
    node: int
    image: str
    created_at_ms: int
    ready_at_ms: int | None
    reason: str | None

    @classmethod
    def from_pb(cls, s: Any) -> SnapshotInfo:
        """From a ``flotilla.v1.control.Snapshot`` message."""
        return cls(
            id=s.id,
            kind=s.kind,
            sandbox=s.sandbox,
            path=_opt(s, "path"),
            size_bytes=s.size_bytes,
            sha256=s.sha256,
            replicas=list(s.replicas),
            state=s.state,
            node=s.node,
            image=s.image,
            created_at_ms=s.created_at_ms,
            ready_at_ms=_opt(s, "ready_at_ms"),
            reason=_opt(s, "reason"),
        )


@dataclass
class CallRecord:
    """A durable call (a spawn or a scheduled run) as the catalog records it."""

    id: str
    """``fc-…``"""
    app: str
    function: str
    state: str
    """``queued``, ``running``, ``succeeded``, ``failed``, ``skipped`` or ``cancelled``."""
    attempt: int
    node: int | None
    scheduled_at_ms: int | None
    """The tick a scheduled run stands for; None for spawns and manual triggers."""
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    output: bytes | None
    error: str | None

    @classmethod
    def from_pb(cls, c: Any) -> CallRecord:
        """From a ``flotilla.v1.control.CallRecord`` message."""
        return cls(
            id=c.id,
            app=c.app,
            function=c.function,
            state=c.state,
            attempt=c.attempt,
            node=_opt(c, "node"),
            scheduled_at_ms=_opt(c, "scheduled_at_ms"),
            created_at_ms=c.created_at_ms,
            started_at_ms=_opt(c, "started_at_ms"),
            finished_at_ms=_opt(c, "finished_at_ms"),
            output=_opt(c, "output"),
            error=_opt(c, "error"),
        )

    @property
    def is_final(self) -> bool:
        """Whether the call has ended."""
        return self.state not in ("queued", "running")

    def result(self) -> bytes:
        """The output of a call that succeeded; :class:`~flotilla.FunctionError` if it failed,
        was skipped or cancelled; :class:`~flotilla.Timeout` if it has not ended."""
        if self.state == "succeeded":
            return self.output or b""
        if not self.is_final:
            raise Timeout("call %s is still %s" % (self.id, self.state))
        raise FunctionError(
            "call %s %s after %d attempt(s): %s"
            % (self.id, self.state, self.attempt, self.error or "no reason recorded")
        )


@dataclass
class AppInfo:
    """A deployed app as the cluster records it."""

    name: str
    version: int
    """1 for the first deploy, +1 for each redeploy."""
    state: str
    """``deployed`` or ``stopped``."""
    functions: list[str]
    spec: dict[str, Any]
    """The validated spec in its canonical JSON form (every field present)."""
    deployed_at_ms: int
    updated_at_ms: int

    @classmethod
    def from_pb(cls, a: Any) -> AppInfo:
        """From a ``flotilla.v1.control.App`` message."""
        return cls(
            name=a.name,
            version=a.version,
            state=a.state,
            functions=list(a.functions),
            spec=json.loads(a.spec_json) if a.spec_json else {},
            deployed_at_ms=a.deployed_at_ms,
            updated_at_ms=a.updated_at_ms,
        )


@dataclass
class ScheduleInfo:
    """A scheduled function's schedule and where it stands."""

    app: str
    function: str
    spec: dict[str, Any]
    """``{"kind": "cron", "expr", "timezone"}`` or ``{"kind": "period", "every_ms", "anchor"}``."""
    anchor_ms: int
    next_fire_at_ms: int | None
    last_fired_at_ms: int | None
    paused: bool
    overlap: str
    catch_up: str
    catch_up_window_s: int
    active_call: str | None
    buffered_call: str | None

    @classmethod
    def from_pb(cls, s: Any) -> ScheduleInfo:
        """From a ``flotilla.v1.control.Schedule`` message."""
        return cls(
            app=s.app,
            function=s.function,
            spec=json.loads(s.spec_json) if s.spec_json else {},
            anchor_ms=s.anchor_ms,
            next_fire_at_ms=_opt(s, "next_fire_at_ms"),
            last_fired_at_ms=_opt(s, "last_fired_at_ms"),
            paused=s.paused,
            overlap=s.overlap,
            catch_up=s.catch_up,
            catch_up_window_s=s.catch_up_window_s,
            active_call=_opt(s, "active_call"),
            buffered_call=_opt(s, "buffered_call"),
        )


@dataclass
class TokenInfo:
    """An API token, without its secret."""

    id: str
    name: str
    created_at_ms: int
    revoked_at_ms: int | None

    @classmethod
    def from_pb(cls, t: Any) -> TokenInfo:
        """From a ``flotilla.v1.control.Token`` message."""
        return cls(id=t.id, name=t.name, created_at_ms=t.created_at_ms, revoked_at_ms=_opt(t, "revoked_at_ms"))


@dataclass
class NewToken:
    """A token just created, with its secret (shown only here)."""

    token: TokenInfo
    secret: str
    """The bearer secret (``flt_…``)."""

    @classmethod
    def from_pb(cls, c: Any) -> NewToken:
        """From a ``flotilla.v1.control.CreatedToken`` message."""
        return cls(token=TokenInfo.from_pb(c.token), secret=c.secret)


@dataclass
class NodeInfo:
    """One member of the cluster."""

    id: int
    addr: str
    role: str
    """``leader``, ``follower`` or ``learner``."""
    status: str
    """``up`` or ``down``."""
    cpus: int
    memory_mib: int
    gpus: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClusterStatus:
    """The cluster as the answering node sees it."""

    leader: int | None
    term: int
    nodes: list[NodeInfo]
    answered_by: int

    @classmethod
    def from_pb(cls, s: Any) -> ClusterStatus:
        """From a ``flotilla.v1.control.ClusterStatusReply`` message."""
        nodes = [
            NodeInfo(
                id=n.id,
                addr=n.addr,
                role=n.role,
                status=n.status,
                cpus=n.cpus,
                memory_mib=n.memory_mib,
                gpus=[{"index": g.index, "model": g.model, "leased_to": _opt(g, "leased_to")} for g in n.gpus],
            )
            for n in s.nodes
        ]
        return cls(leader=_opt(s, "leader"), term=s.term, nodes=nodes, answered_by=s.answered_by)


@dataclass
class Membership:
    """Voters and learners after a membership change."""

    voters: list[int]
    learners: list[int]

    @classmethod
    def from_pb(cls, m: Any) -> Membership:
        """From a ``flotilla.v1.control.MembershipReply`` message."""
        return cls(voters=list(m.voters), learners=list(m.learners))


@dataclass
class ReplicaInfo:
    """One replica of a function."""

    id: str
    node: int
    version: int
    state: str
    """``starting`` or ``ready``."""
    gpus: list[int]


@dataclass
class FunctionLoad:
    """Replicas and load of one function, as the answering node sees them."""

    function: str
    replicas_ready: int
    replicas_starting: int
    running: int
    """Inputs running now, over the whole cluster."""
    waiting: int
    queued_calls: int
    replicas: list[ReplicaInfo]
    pending_reason: str | None
    """Why a wanted replica cannot be placed now, when one waits for a node."""

    @classmethod
    def from_pb(cls, f: Any) -> FunctionLoad:
        """From a ``flotilla.v1.control.FunctionLoad`` message."""
        return cls(
            function=f.function,
            replicas_ready=f.replicas_ready,
            replicas_starting=f.replicas_starting,
            running=f.running,
            waiting=f.waiting,
            queued_calls=f.queued_calls,
            replicas=[ReplicaInfo(id=r.id, node=r.node, version=r.version, state=r.state, gpus=list(r.gpus))
                      for r in f.replicas],
            pending_reason=f.pending_reason or None,
        )


@dataclass
class StoredBlob:
    """A blob stored in the cluster (``put_blob``)."""

    sha256: str
    """Hex sha256 of the blob: what a function's ``code`` names."""
    size: int
    nodes: list[int]
    """The nodes holding a copy."""


@dataclass
class LogLine:
    """One line of a sandbox's or a function's output."""

    time: str
    """RFC 3339 timestamp (nanoseconds, UTC)."""
    stream: str
    """``stdout`` or ``stderr``."""
    text: str
    """The line, without its newline."""
    source: str
    """What wrote it: the sandbox generation's container, or the function replica."""
    node: int
    """The node it was read on."""
    call_ids: list[str]
    """Function logs: the durable calls it is attributed to."""
    generation: int
    """Sandbox logs: the generation whose container wrote it."""

    @classmethod
    def from_pb(cls, m: Any) -> LogLine:
        """From a ``flotilla.v1.observe.LogLine`` message."""
        return cls(time=m.time, stream=m.stream, text=m.text, source=m.source, node=m.node,
                   call_ids=list(m.call_ids), generation=m.generation)


@dataclass
class SnapshotProgress:
    """What a snapshot in progress is doing, for progress displays."""

    phase: str
    """What the node is doing, e.g. ``checkpoint`` (memory), ``store``, ``replicate``."""
    done_bytes: int
    total_bytes: int
    """0 when not known in advance."""
