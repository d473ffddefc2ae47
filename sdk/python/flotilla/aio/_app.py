"""Apps, schedules and runs for asyncio code: deploy a spec (TOML path, TOML text or dict),
list, show, stop and remove apps; list, pause, resume and trigger schedules; list runs.

A deploy carries a request id chosen once, so a retry after a lost reply is applied once.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from .. import spec as specs
from ..records import AppInfo, CallRecord, FunctionLoad, ScheduleInfo
from ..v1 import control_pb2 as pb
from ._client import AsyncClient, default_client


async def deploy(spec: str | os.PathLike[str] | dict[str, Any], *, client: AsyncClient | None = None) -> AppInfo:
    """Deploys an app spec (a path of an ``app.toml``, its text, or a dict in the same shape),
    creating the app or replacing it atomically with the next version. Invalid specs raise
    :class:`~flotilla.InvalidArgument` naming the field."""
    client = client or default_client()
    canonical = specs.load(spec)
    req = pb.DeployAppRequest(spec_json=json.dumps(canonical), request_id=str(uuid.uuid4()))
    return AppInfo.from_pb((await client.control("DeployApp", req)).app)


async def list_apps(*, client: AsyncClient | None = None) -> list[AppInfo]:
    """All apps, deployed and stopped, by name."""
    client = client or default_client()
    return [AppInfo.from_pb(a) for a in (await client.control("ListApps", pb.ListAppsRequest())).apps]


async def get_app(name: str, *, client: AsyncClient | None = None) -> AppInfo:
    """One app by name."""
    client = client or default_client()
    return AppInfo.from_pb(await client.control("GetApp", pb.GetAppRequest(name=name)))


async def stop_app(name: str, *, client: AsyncClient | None = None) -> AppInfo:
    """Stops an app: it stays listed as ``stopped`` until redeployed."""
    client = client or default_client()
    return AppInfo.from_pb(await client.control("StopApp", pb.StopAppRequest(name=name)))


async def remove_app(name: str, *, client: AsyncClient | None = None) -> AppInfo:
    """Stops and removes an app with its schedules; answers with the app as it was."""
    client = client or default_client()
    return AppInfo.from_pb(await client.control("RemoveApp", pb.RemoveAppRequest(name=name)))


async def list_schedules(app: str | None = None, *, client: AsyncClient | None = None) -> list[ScheduleInfo]:
    """Every schedule, or only ``app``'s."""
    client = client or default_client()
    req = pb.ListSchedulesRequest(app=app) if app is not None else pb.ListSchedulesRequest()
    return [ScheduleInfo.from_pb(s) for s in (await client.control("ListSchedules", req)).schedules]


async def pause_schedule(app: str, function: str, *, client: AsyncClient | None = None) -> ScheduleInfo:
    """Pauses a schedule: ticks while paused are not fired."""
    client = client or default_client()
    return ScheduleInfo.from_pb(await client.control("PauseSchedule", pb.ScheduleRef(app=app, function=function)))


async def resume_schedule(app: str, function: str, *, client: AsyncClient | None = None) -> ScheduleInfo:
    """Resumes a schedule from its first tick after now."""
    client = client or default_client()
    return ScheduleInfo.from_pb(await client.control("ResumeSchedule", pb.ScheduleRef(app=app, function=function)))


async def list_runs(
    app: str | None = None,
    function: str | None = None,
    *,
    scheduled: bool = False,
    limit: int = 0,
    client: AsyncClient | None = None,
) -> list[CallRecord]:
    """Durable calls (spawns and scheduled runs), newest first; only scheduled runs with
    ``scheduled``; ``limit`` 0 means 100."""
    client = client or default_client()
    req = pb.ListRunsRequest(scheduled=scheduled, limit=limit)
    if app is not None:
        req.app = app
    if function is not None:
        req.function = function
    return [CallRecord.from_pb(c) for c in (await client.control("ListRuns", req)).calls]


async def function_status(app: str, *, client: AsyncClient | None = None) -> list[FunctionLoad]:
    """Replicas and load of each function of ``app``."""
    client = client or default_client()
    reply = await client.control("FunctionStatus", pb.FunctionStatusRequest(app=app))
    return [FunctionLoad.from_pb(f) for f in reply.functions]
