"""Python apps, the Modal way: ``flotilla.App``, ``@app.function(...)``, ``flotilla.Cron`` and
``flotilla.Period``.

    app = flotilla.App("etl", image="flotilla/python")

    @app.function(schedule=flotilla.Cron("*/5 * * * *"), timeout=60)
    def tick(): ...

    @app.function()
    def double(x: int) -> int:
        return 2 * x

Deploying (``python -m flotilla deploy etl.py``, ``flotilla app deploy etl.py``, or
``app.deploy()``) ships the code to the cluster's blob store as one tar archive (see
:func:`code_archive`): the module, the Python files and packages beside it, and the runner
(this file, ``_pyrunner`` and ``flotilla_worker``). Each decorated function becomes a
worker-mode function of the app spec whose ``code`` names that archive; every replica has it
unpacked at ``$FLOTILLA_CODE`` and runs ``python3 -c BOOT``, which imports the module once and
serves many inputs over the worker protocol. Arguments and results are pickled. A raised
exception fails the input with the remote traceback text.

This module is also the ``flotilla`` module *inside* replicas, where no gRPC is installed:
it imports only the standard library at the top, and the client only inside methods that
run on the caller's side.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Largest code archive (the cluster's limit too): it is unpacked into each replica's /tmp.
MAX_CODE = 64 << 20
# Names the function a replica serves; also what marks a Python app's function.
FUNCTION_ENV = "FLOTILLA_PY_FUNCTION"
# Folders never shipped.
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}


class Cron:
    """A cron schedule: 5 fields (or 6 with seconds first), evaluated in ``timezone``."""

    def __init__(self, expr: str, timezone: str = "UTC") -> None:
        self.expr = expr
        """The expression, e.g. ``*/5 * * * *``."""
        self.timezone = timezone
        """An IANA time zone name."""

    def spec(self) -> dict[str, str]:
        """The app-spec (TOML-shaped) form."""
        return {"cron": self.expr, "timezone": self.timezone}


class Period:
    """A fixed period such as ``"10s"``, ``"5m"`` or ``"1h30m"`` (or seconds as a number)."""

    def __init__(self, every: str | float) -> None:
        self.every = every if isinstance(every, str) else "%dms" % round(every * 1000)
        """The period in the spec's duration syntax."""

    def spec(self) -> dict[str, str]:
        """The app-spec (TOML-shaped) form."""
        return {"period": self.every}


class AppFunction:
    """A function decorated with ``@app.function()``: callable locally as before, and with
    ``remote``, ``spawn`` and ``map`` on the deployed app."""

    def __init__(self, app: App, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.app = app
        """The app it belongs to."""
        self.raw_f = fn
        """The undecorated function."""
        self.name = fn.__name__
        """Its name in the app (the function's own name)."""
        self.options = options
        """The app-spec options given to the decorator."""
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def _remote_function(self) -> Any:
        from .functions import Function

        return Function.lookup(self.app.name, self.name)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the deployed function with these arguments on a replica and returns its result."""
        return self._remote_function().remote(*args, **kwargs)

    def spawn(self, *args: Any, **kwargs: Any) -> Any:
        """Starts a durable call of the deployed function; returns a ``FunctionCall``."""
        return self._remote_function().spawn(*args, **kwargs)

    def map(self, inputs: Iterable[Any], *, parallelism: int = 8, return_exceptions: bool = False) -> Iterator[Any]:
        """Calls the deployed function on each input (one argument each), results in order."""
        return self._remote_function().map(inputs, parallelism=parallelism, return_exceptions=return_exceptions)


class App:
    """An app of Python functions: ``app = flotilla.App("etl")``, then ``@app.function()``."""

    def __init__(self, name: str, *, image: str = "flotilla/python", env: dict[str, str] | None = None) -> None:
        self.name = name
        """The app's name on the cluster."""
        self.image = image
        """The default image of its functions; it must have ``python3``."""
        self.env = dict(env or {})
        """Environment of every function (a function's own ``env`` adds to it)."""
        self.functions: dict[str, AppFunction] = {}
        """Decorated functions by name."""

    def function(
        self,
        *,
        image: str | None = None,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: str | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        concurrency: int | None = None,
        timeout: int | None = None,
        retries: int | dict[str, Any] | None = None,
        schedule: Cron | Period | None = None,
        env: dict[str, str] | None = None,
    ) -> Callable[[Callable[..., Any]], AppFunction]:
        """Declares a function of the app with the app-spec options: ``cpu`` (cores),
        ``memory`` (MiB), ``gpu`` (``MODEL:N``), ``timeout`` and ``scaledown_window``
        (seconds), ``retries`` (a count or ``{"max", "initial_delay_ms", "backoff"}``),
        ``schedule`` (:class:`Cron` or :class:`Period`); omitted options take the spec's
        defaults."""
        options: dict[str, Any] = {
            "image": image,
            "cpu": cpu,
            "memory_mib": memory,
            "gpu": gpu,
            "min_containers": min_containers,
            "max_containers": max_containers,
            "buffer_containers": buffer_containers,
            "scaledown_window_s": scaledown_window,
            "concurrency": concurrency,
            "timeout_s": timeout,
            "retries": retries,
            "schedule": schedule.spec() if schedule is not None else None,
            "env": env,
        }

        def decorate(fn: Callable[..., Any]) -> AppFunction:
            if fn.__name__ in self.functions:
                raise ValueError("app %s already has a function named %s" % (self.name, fn.__name__))
            f = AppFunction(self, fn, {k: v for k, v in options.items() if v is not None})
            self.functions[fn.__name__] = f
            return f

        return decorate

    def spec(self, code: str) -> dict[str, Any]:
        """The app spec (TOML-shaped dict) whose functions run the code archive stored in the
        cluster as ``code`` (its sha256; see :func:`code_archive`)."""
        if not self.functions:
            raise ValueError("app %s has no functions (decorate some with @app.function())" % self.name)
        functions = {}
        for name, f in self.functions.items():
            spec = dict(f.options)
            spec.setdefault("image", self.image)
            spec["env"] = dict(self.env, **spec.get("env", {}), **{FUNCTION_ENV: name})
            spec["command"] = ["python3", "-c", _boot()]
            spec["mode"] = "worker"
            spec["code"] = code
            functions[name] = spec
        return {"name": self.name, "functions": functions}

    def deploy(self, *, client: Any = None) -> Any:
        """Deploys the app from the source file of the module its functions are defined in
        (with the Python files and packages beside it); returns the ``AppInfo``."""
        module = sys.modules[next(iter(self.functions.values())).raw_f.__module__]
        path = getattr(module, "__file__", None)
        if not path:
            raise ValueError("app %s: its module has no source file to ship" % self.name)
        return deploy_file(self, path, client=client)


def deploy_file(app: App, path: str, *, client: Any = None) -> Any:
    """Ships the code of ``app``, defined in the module file ``path``, to the cluster and
    deploys the app; returns the ``AppInfo``."""
    from . import _runner, apps
    from .client import resolve

    archive = code_archive(path)
    stored = _runner.run(resolve(client).put_blob(archive))
    return apps.deploy(app.spec(stored.sha256), client=client)


def code_archive(path: str) -> bytes:
    """The tar archive a Python app ships: ``bundle.json`` (the runner's modules, the app's
    module name, the client's Python version) and, under ``src/``, the module file ``path``
    with every ``*.py`` file and Python package (a folder with ``__init__.py``, whole) in its
    folder. Hidden names, ``__pycache__`` and ``*.pyc`` are left out. Raises ``ValueError``
    over :data:`MAX_CODE` bytes."""
    folder = os.path.dirname(os.path.abspath(path))
    files = [os.path.abspath(path)]
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.path == files[0]:
            continue
        if entry.is_file() and entry.name.endswith(".py"):
            files.append(entry.path)
        elif entry.is_dir() and entry.name not in _SKIP_DIRS and os.path.isfile(os.path.join(entry.path, "__init__.py")):
            files.extend(_package_files(entry.path))
    total = sum(os.path.getsize(f) for f in files)
    if total > MAX_CODE:
        raise ValueError("%s is too large to ship: its module and packages hold %d bytes, over the limit of %d"
                         % (path, total, MAX_CODE))
    bundle = {
        "modules": {
            "flotilla_worker": _source_of("flotilla_worker"),
            "flotilla": _source_of("app"),
            "flotilla_pyrunner": _source_of("_pyrunner"),
        },
        "module": os.path.splitext(os.path.basename(path))[0],
        "python": "%d.%d" % sys.version_info[:2],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = json.dumps(bundle).encode()
        info = tarfile.TarInfo("bundle.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for f in files:
            tar.add(f, arcname="src/" + os.path.relpath(f, folder).replace(os.sep, "/"), recursive=False)
    if out.tell() > MAX_CODE:
        raise ValueError("%s is too large to ship: its archive is %d bytes, over the limit of %d"
                         % (path, out.tell(), MAX_CODE))
    return out.getvalue()


def _package_files(folder: str) -> list[str]:
    """Every file of a package folder, recursively, but hidden names and caches."""
    found: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        found.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith(".") and not n.endswith(".pyc"))
    return found


def is_python_function(spec: dict[str, Any]) -> bool:
    """Whether a function of a deployed app's canonical spec is one of these Python functions."""
    env = spec.get("env", {})
    # (FLOTILLA_PY_BUNDLE marks the functions of apps deployed by SDKs before code blobs.)
    return FUNCTION_ENV in env or "FLOTILLA_PY_BUNDLE" in env


def _source_of(module: str) -> str:
    """The source of a module shipped with every Python function (this package's, or the
    top-level ``flotilla_worker``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, module + ".py") if module != "flotilla_worker" else _worker_path()
    with open(path) as f:
        return f.read()


def _worker_path() -> str:
    import importlib.util

    found = importlib.util.find_spec("flotilla_worker")
    if found is None or found.origin is None:
        raise ValueError("flotilla_worker is not installed (it comes with this package)")
    return found.origin


def _boot() -> str:
    """The replica's ``python3 -c`` program: load the runner's modules from the unpacked code
    archive, put its ``src`` first on the path, serve the function named in the environment."""
    return (
        "import json,os,sys,types\n"
        "d=os.environ['FLOTILLA_CODE']\n"
        "with open(os.path.join(d,'bundle.json')) as f: b=json.load(f)\n"
        "for n in ('flotilla_worker','flotilla','flotilla_pyrunner'):\n"
        "    m=types.ModuleType(n);sys.modules[n]=m\n"
        "    exec(compile(b['modules'][n],'<flotilla:'+n+'>','exec'),m.__dict__)\n"
        "b['function']=os.environ[%r]\n"
        "b['src']=os.path.join(d,'src')\n"
        "sys.path.insert(0,b['src'])\n"
        "sys.modules['flotilla_pyrunner'].main(b)\n" % FUNCTION_ENV
    )
