"""The public surface: every exported name of flotilla and flotilla.aio, and every public
method and property of the exported classes, has a docstring; the two modules export the
same names (but for the client class) and their classes the same methods; the package is
typed."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import resources

import flotilla
import flotilla.aio


def _undocumented(module: object) -> list[str]:
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, (property, classmethod))):
                    continue
                if not inspect.getdoc(getattr(obj, attr)):
                    missing.append("%s.%s" % (name, attr))
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert _undocumented(flotilla) == []
    assert _undocumented(flotilla.aio) == []


def test_the_sync_and_async_apis_match() -> None:
    # Python apps are declared with flotilla's App, Cron and Period in either kind of code.
    declarations = {"Client", "App", "AppFunction", "Cron", "Period"}
    assert set(flotilla.__all__) - declarations == set(flotilla.aio.__all__) - {"AsyncClient"}
    for name in ("Sandbox", "Function", "FunctionCall", "ContainerProcess", "StreamReader", "FileAccess"):
        sync, aio = getattr(flotilla, name), getattr(flotilla.aio, name)
        sync_methods = {m for m in dir(sync) if not m.startswith("_") and callable(getattr(sync, m))}
        aio_methods = {m for m in dir(aio) if not m.startswith("_") and callable(getattr(aio, m))}
        assert sync_methods == aio_methods, name
        # An option added to one twin only would drift: the parameters match by name and order.
        for m in sync_methods:
            params = [list(inspect.signature(getattr(kind, m)).parameters) for kind in (sync, aio)]
            assert params[0] == params[1], "%s.%s" % (name, m)


def test_the_package_is_typed_and_its_hints_check() -> None:
    assert resources.files("flotilla").joinpath("py.typed").is_file()
    # The installed package, generated stubs included, as a user's type checker sees it.
    o = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "-p", "flotilla"], capture_output=True,
                       text=True)
    assert o.returncode == 0, o.stdout + o.stderr
