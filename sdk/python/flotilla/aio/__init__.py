"""The asyncio twin of :mod:`flotilla`: the same API, every call a coroutine.

    import flotilla.aio as fa

    async with fa.AsyncClient() as client:
        sb = await fa.Sandbox.create(image="flotilla/busybox", client=client)
        p = await sb.exec("sh", "-c", "echo hi")
        print(await p.stdout.read(), await p.wait())
        out = await fa.Function.lookup("app", "fn", client=client).remote(b"input")
"""

from ..errors import (
    AlreadyExists,
    Error,
    FailedPrecondition,
    FunctionError,
    InternalError,
    InvalidArgument,
    NoCapacity,
    NotFound,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from ..records import (
    AppInfo,
    CallRecord,
    ClusterStatus,
    FunctionLoad,
    LogLine,
    Membership,
    NewToken,
    NodeInfo,
    ReplicaInfo,
    SandboxInfo,
    ScheduleInfo,
    SnapshotInfo,
    SnapshotProgress,
    StoredBlob,
    TokenInfo,
)
from ._app import (
    deploy,
    function_status,
    get_app,
    list_apps,
    list_runs,
    list_schedules,
    pause_schedule,
    remove_app,
    resume_schedule,
    stop_app,
)
from ._client import AsyncClient, default_client
from ._function import Function, FunctionCall
from ._sandbox import (
    ContainerProcess,
    FileAccess,
    Sandbox,
    StdinWriter,
    StreamReader,
    get_snapshot,
    list_snapshots,
    remove_snapshot,
)

__all__ = [
    "AlreadyExists",
    "AppInfo",
    "AsyncClient",
    "CallRecord",
    "ClusterStatus",
    "ContainerProcess",
    "Error",
    "FailedPrecondition",
    "FileAccess",
    "Function",
    "FunctionCall",
    "FunctionError",
    "FunctionLoad",
    "InternalError",
    "InvalidArgument",
    "LogLine",
    "Membership",
    "NewToken",
    "NoCapacity",
    "NodeInfo",
    "NotFound",
    "ReplicaInfo",
    "Sandbox",
    "SandboxInfo",
    "ScheduleInfo",
    "SnapshotInfo",
    "SnapshotProgress",
    "StoredBlob",
    "StdinWriter",
    "StreamReader",
    "Timeout",
    "TokenInfo",
    "Unauthenticated",
    "Unavailable",
    "default_client",
    "deploy",
    "function_status",
    "get_app",
    "get_snapshot",
    "list_apps",
    "list_runs",
    "list_schedules",
    "list_snapshots",
    "pause_schedule",
    "remove_app",
    "remove_snapshot",
    "resume_schedule",
    "stop_app",
]
