"""Apps, schedules and runs, sync: each function runs its :mod:`flotilla.aio` twin on the
SDK's loop thread.

    app = flotilla.deploy("app.toml")          # or TOML text, or a dict of the same shape
    flotilla.list_apps(); flotilla.get_app("etl"); flotilla.stop_app("etl")
"""

from __future__ import annotations

import os
from typing import Any

from . import _runner
from .aio import _app as aio
from .client import Client, resolve
from .records import AppInfo, CallRecord, FunctionLoad, ScheduleInfo


def deploy(spec: str | os.PathLike[str] | dict[str, Any], *, client: Client | None = None) -> AppInfo:
    """Deploys an app spec (a path of an ``app.toml``, its text, or a dict in the same shape),
    creating the app or replacing it atomically with the next version. Invalid specs raise
    :class:`~flotilla.InvalidArgument` naming the field."""
    return _runner.run(aio.deploy(spec, client=resolve(client)))


def list_apps(*, client: Client | None = None) -> list[AppInfo]:
    """All apps, deployed and stopped, by name."""
    return _runner.run(aio.list_apps(client=resolve(client)))


def get_app(name: str, *, client: Client | None = None) -> AppInfo:
    """One app by name (``flotilla app show``)."""
    return _runner.run(aio.get_app(name, client=resolve(client)))


def stop_app(name: str, *, client: Client | None = None) -> AppInfo:
    """Stops an app: it stays listed as ``stopped`` until redeployed."""
    return _runner.run(aio.stop_app(name, client=resolve(client)))


def remove_app(name: str, *, client: Client | None = None) -> AppInfo:
    """Stops and removes an app with its schedules; answers with the app as it was."""
    return _runner.run(aio.remove_app(name, client=resolve(client)))


def list_schedules(app: str | None = None, *, client: Client | None = None) -> list[ScheduleInfo]:
    """Every schedule, or only ``app``'s."""
    return _runner.run(aio.list_schedules(app, client=resolve(client)))


def pause_schedule(app: str, function: str, *, client: Client | None = None) -> ScheduleInfo:
    """Pauses a schedule: ticks while paused are not fired."""
    return _runner.run(aio.pause_schedule(app, function, client=resolve(client)))


def resume_schedule(app: str, function: str, *, client: Client | None = None) -> ScheduleInfo:
    """Resumes a schedule from its first tick after now."""
    return _runner.run(aio.resume_schedule(app, function, client=resolve(client)))


def list_runs(
    app: str | None = None,
    function: str | None = None,
    *,
    scheduled: bool = False,
    limit: int = 0,
    client: Client | None = None,
) -> list[CallRecord]:
    """Durable calls (spawns and scheduled runs), newest first; ``limit`` 0 means 100."""
    return _runner.run(aio.list_runs(app, function, scheduled=scheduled, limit=limit, client=resolve(client)))


def function_status(app: str, *, client: Client | None = None) -> list[FunctionLoad]:
    """Replicas and load of each function of ``app``."""
    return _runner.run(aio.function_status(app, client=resolve(client)))
