"""``python -m flotilla deploy app.py``: deploys the Python app defined in a file.

The file is imported (its top level runs here, as it will in each replica), the one
``flotilla.App`` it defines is found, its code (the file, and the Python files and packages
beside it) is stored in the cluster, and its functions are deployed to run it.
The connection comes from ``--endpoint``/``--token``/``--tls-ca`` or, as for the ``flotilla``
CLI, from FLOTILLA_ENDPOINT, FLOTILLA_TOKEN and FLOTILLA_TLS_CA. Prints the app and its
version; exits 1 with the error on stderr when the deploy fails, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback

from . import Client, Error
from .app import App, deploy_file


def load_app(path: str) -> App:
    """The App defined in the Python file ``path``."""
    name = os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(path):
        raise FileNotFoundError("no such file: %s" % path)
    # Modules and packages beside it import as they will in the replicas.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise ValueError("%s defines %d flotilla.App objects; it must define exactly one" % (path, len(apps)))
    return apps[0]


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flotilla", description="Deploy Python apps to Flotilla.")
    parser.add_argument("--endpoint", help="node URLs, comma-separated (default FLOTILLA_ENDPOINT)")
    parser.add_argument("--token", help="API token (default FLOTILLA_TOKEN)")
    parser.add_argument("--tls-ca", help="CA certificate (PEM) for https endpoints (default FLOTILLA_TLS_CA)")
    commands = parser.add_subparsers(dest="command", required=True)
    dep = commands.add_parser("deploy", help="deploy the flotilla.App defined in a Python file")
    dep.add_argument("file", help="the Python file that defines the app")
    args = parser.parse_args(argv)
    try:
        app = load_app(args.file)
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - the user's module failed to import: show why
        print("error: %s failed to import:\n%s" % (args.file, traceback.format_exc()), file=sys.stderr)
        return 1
    try:
        with Client(args.endpoint, token=args.token, tls_ca=args.tls_ca) as client:
            info = deploy_file(app, args.file, client=client)
    except (Error, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print("%s version %d: %s" % (info.name, info.version, ", ".join(info.functions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
