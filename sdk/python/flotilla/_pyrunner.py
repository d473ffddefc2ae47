"""The replica side of a Python app function (see ``flotilla.app``): standard library only.

``main(bundle)`` imports the app's module once from the unpacked code archive, which the boot
program put first on ``sys.path`` (so ``print`` at import and in calls goes to the replica's
log, and tracebacks show the module's own lines), then serves inputs with
``flotilla_worker.serve``.
Each input is a pickled ``(args, kwargs)`` (empty for a scheduled tick); each output is the
pickled result. An exception fails that input with its traceback text, which the caller sees
in ``flotilla.FunctionError``. When the image's Python is not the client's major.minor, a
warning says so at start, and a failure to unpickle names both versions.
"""

import importlib.util
import os
import pickle
import sys
import traceback

from typing import Any

import flotilla_worker  # type: ignore[import-untyped]  # a one-file module, shipped beside the bundle


class RemoteError(Exception):
    """Carries the traceback text of an exception raised by the function."""


def main(bundle: dict[str, Any]) -> None:
    """Imports the bundle's module and serves its function until stdin closes."""
    here = "%d.%d" % sys.version_info[:2]
    client = bundle["python"]
    if here != client:
        print("flotilla: the image runs Python %s and the client Python %s; pickled arguments and results "
              "may not load across versions" % (here, client), file=sys.stderr)
    # Loaded from its file under the name it had on the client (whatever the name: one that is
    # also a standard module's, or one with a dot), so pickles of its classes load both ways.
    name = bundle["module"]
    spec = importlib.util.spec_from_file_location(name, os.path.join(bundle["src"], name + ".py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Frames go to the real stdout: whatever the module prints at import goes to the log.
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        spec.loader.exec_module(module)
    finally:
        sys.stdout = stdout
    target = getattr(module, bundle["function"])
    fn = getattr(target, "raw_f", target)

    def handle(data: bytes) -> bytes:
        try:
            args, kwargs = pickle.loads(data) if data else ((), {})
        except Exception as e:  # noqa: BLE001 - any unpickling failure is the caller's input
            raise RemoteError("cannot unpickle the input (client Python %s, image Python %s): %s: %s"
                              % (client, here, type(e).__name__, e)) from None
        try:
            result = fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the function's own failure goes back to the caller
            raise RemoteError(traceback.format_exc()) from None
        return pickle.dumps(result)

    flotilla_worker.serve(handle)
