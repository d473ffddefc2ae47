"""Flotilla's Python client: sandboxes, functions, apps, schedules and tokens of a cluster.

    import flotilla

    client = flotilla.Client()     # FLOTILLA_ENDPOINT / FLOTILLA_TOKEN / FLOTILLA_TLS_CA
    sb = flotilla.Sandbox.create(image="flotilla/busybox", timeout=300, client=client)
    p = sb.exec("sh", "-c", "echo hi")
    print(p.stdout.read(), p.wait())
    flotilla.deploy("app.toml")
    print(flotilla.Function.lookup("app", "fn").remote(b"input"))

Every call blocks; :mod:`flotilla.aio` is the same API for asyncio. Errors are subclasses of
:class:`flotilla.Error`. The reference is docs/reference/python.md in the repository.
"""

from .app import App, AppFunction, Cron, Period
from .apps import (
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
from .client import Client, default_client
from .errors import (
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
from .functions import Function, FunctionCall
from .records import (
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
from .sandbox import (
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
    "App",
    "AppFunction",
    "AppInfo",
    "CallRecord",
    "Client",
    "ClusterStatus",
    "ContainerProcess",
    "Cron",
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
    "Period",
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
