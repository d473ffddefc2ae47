"""Python apps the Modal way: a module with ``flotilla.App`` and ``@app.function`` deployed
with ``python -m flotilla deploy``, its functions run in ``flotilla/python`` replicas that
import the module once; pickled arguments and results; a raised exception comes back as
FunctionError with the remote traceback; spawn, map, a schedule; what a call printed; a local
package and a module larger than an environment variable ship through the blob store; a module
that fails to import and code too large to ship."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flotilla
import flotilla.client
from conftest import BIN, Cluster

# The module file each deployed app came from, by app name.
_written: dict[str, Path] = {}

MODULE = '''
import os
import flotilla
import helpers

app = flotilla.App("{name}")
print("imported", flush=True)


@app.function(cpu=0.2, memory=128, max_containers=1)
def double(x: int) -> int:
    return 2 * x


@app.function(cpu=0.2, memory=128)
def greet(name, punctuation="!"):
    print("greeting", name)
    return {{"hello": name + punctuation, "pid": os.getpid()}}


@app.function(cpu=0.2, memory=128)
def shout(text):
    return helpers.shout(text)


@app.function(cpu=0.2, memory=128)
def boom(row):
    raise ValueError("bad row %d" % row)


@app.function(cpu=0.2, memory=128, schedule=flotilla.Period("1s"))
def tick():
    return "tick"
'''


def deploy_file(cluster: Cluster, path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m flotilla deploy PATH`` with the cluster in the environment, as a user runs it."""
    env = dict(os.environ, FLOTILLA_ENDPOINT=",".join(cluster.endpoints), FLOTILLA_TOKEN=cluster.token)
    return subprocess.run([sys.executable, "-m", "flotilla", "deploy", str(path)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def pyapp(cluster: Cluster, client: flotilla.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app deployed from etl.py; its name. Removed at the end."""
    built = subprocess.run([BIN, "image", "build-base", "python"], capture_output=True, timeout=600)
    assert built.returncode == 0, built.stderr.decode()
    name = "pyapps-%d" % (os.getpid() % 100000)
    path = tmp_path_factory.mktemp("pyapp") / "etl.py"
    path.write_text(MODULE.format(name=name))
    # A local package beside the module ships with it.
    (path.parent / "helpers").mkdir()
    (path.parent / "helpers" / "__init__.py").write_text("from .words import shout\n")
    (path.parent / "helpers" / "words.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    _written[name] = path
    out = deploy_file(cluster, path)
    assert out.returncode == 0, out.stderr
    # The module ran here too (its print), then the deploy line.
    assert out.stdout == "imported\n%s version 1: boom, double, greet, shout, tick\n" % name
    yield name
    flotilla.remove_app(name, client=client)


def test_remote_pickles_arguments_and_results(client: flotilla.Client, pyapp: str) -> None:
    double = flotilla.Function.lookup(pyapp, "double", client=client)
    assert double.is_python()
    assert double.remote(21) == 42
    greet = flotilla.Function.lookup(pyapp, "greet", client=client)
    first = greet.remote("ann", punctuation="?")
    assert first["hello"] == "ann?"
    # One process per replica serves every input (the module is imported once).
    assert greet.remote("bob")["pid"] == first["pid"]
    assert not flotilla.Function.lookup(pyapp, "nope", client=client).is_python()
    # The package beside the module came with it.
    assert flotilla.Function.lookup(pyapp, "shout", client=client).remote("hi") == "HI!"
    # The code is a blob the spec names, not an environment variable.
    spec = flotilla.get_app(pyapp, client=client).spec["functions"]["double"]
    assert len(spec["code"]) == 64 and all(len(v) < 100 for v in spec["env"].values()), spec


def test_an_exception_comes_back_with_the_remote_traceback(client: flotilla.Client, pyapp: str) -> None:
    with pytest.raises(flotilla.FunctionError) as raised:
        flotilla.Function.lookup(pyapp, "boom", client=client).remote(7)
    text = str(raised.value)
    assert "Traceback" in text and "ValueError: bad row 7" in text
    # The module's own line, as it would show locally.
    assert 'etl.py", line' in text and 'raise ValueError("bad row %d" % row)' in text


def test_spawn_map_and_calls_by_id(client: flotilla.Client, pyapp: str) -> None:
    double = flotilla.Function.lookup(pyapp, "double", client=client)
    call = double.spawn(5)
    assert call.get(timeout=60) == 10
    # A handle made from the id alone finds out from the cluster that the result is pickled.
    assert flotilla.FunctionCall.from_id(call.object_id, client=client).get(timeout=60) == 10
    assert list(double.map(range(5), parallelism=3)) == [0, 2, 4, 6, 8]
    failed = flotilla.Function.lookup(pyapp, "boom", client=client).spawn(3)
    with pytest.raises(flotilla.FunctionError, match="bad row 3"):
        failed.get(timeout=60)


def test_logs_of_the_function_and_of_one_call(client: flotilla.Client, pyapp: str) -> None:
    greet = flotilla.Function.lookup(pyapp, "greet", client=client)
    carol = greet.spawn("carol")
    assert carol.get(timeout=60)["hello"] == "carol!"
    dave = greet.spawn("dave")
    assert dave.get(timeout=60)["hello"] == "dave!"
    # What the worker process printed while it ran each call, and nothing else.
    for call, name in [(carol, "carol"), (dave, "dave")]:
        # (The engine reads stderr apart from the reply: give a late line a moment.)
        deadline = time.monotonic() + 5
        while not (lines := list(call.logs())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [line.text for line in lines] == ["greeting " + name]
        assert lines[0].call_ids == [call.object_id] and lines[0].stream == "stderr"
    everything = [line.text for line in greet.logs()]
    assert "greeting carol" in everything and "greeting dave" in everything
    assert [line.text for line in greet.logs(call=dave.object_id)] == ["greeting dave"]
    with pytest.raises(flotilla.NotFound):
        list(flotilla.Function.lookup(pyapp, "nope", client=client).logs())


def test_the_decorated_function_calls_the_deployed_one(cluster: Cluster, pyapp: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flotilla.__main__ import load_app

    monkeypatch.setattr(flotilla.client, "_default", cluster.client())
    app = load_app(str(_written[pyapp]))
    assert app.functions["double"](4) == 8            # locally, as written
    assert app.functions["double"].remote(4) == 8     # on the cluster
    assert list(app.functions["double"].map([1, 2])) == [2, 4]


def test_a_scheduled_python_function_runs_on_its_ticks(client: flotilla.Client, pyapp: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        runs = [r for r in flotilla.list_runs(pyapp, "tick", scheduled=True, client=client) if r.state == "succeeded"]
        if len(runs) >= 2:
            break
        assert time.monotonic() < deadline, "fewer than two ticks succeeded within 90 s"
        time.sleep(0.5)
    assert pickle.loads(runs[0].output or b"") == "tick"
    assert runs[0].scheduled_at_ms != runs[1].scheduled_at_ms


def test_deploy_refuses_a_module_that_fails_to_import_or_is_too_large(cluster: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('import flotilla\napp = flotilla.App("pybad")\nraise RuntimeError("broken at import")\n')
    out = deploy_file(cluster, bad)
    assert out.returncode == 1
    assert "bad.py failed to import" in out.stderr and "RuntimeError: broken at import" in out.stderr
    # Over the limit of 64 MiB of code (the module and its packages): refused before anything is sent.
    big = tmp_path / "big" / "big.py"
    (big.parent / "data").mkdir(parents=True)
    (big.parent / "data" / "__init__.py").write_text("")
    with open(big.parent / "data" / "weights.bin", "wb") as f:
        f.truncate(65 << 20)
    big.write_text('import flotilla\napp = flotilla.App("pybig")\n@app.function()\ndef f():\n    return 1\n')
    out = deploy_file(cluster, big)
    assert out.returncode == 1 and "too large to ship" in out.stderr, out.stderr
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    out = deploy_file(cluster, none)
    assert out.returncode == 1 and "exactly one" in out.stderr, out.stderr
    assert deploy_file(cluster, tmp_path / "missing.py").returncode == 2


def test_the_rust_cli_deploys_a_python_app_through_the_package(cluster: Cluster, client: flotilla.Client,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "clidep.py"
    name = "pycli-%d" % (os.getpid() % 100000)
    path.write_text('import flotilla\napp = flotilla.App("%s")\n@app.function(cpu=0.1, memory=64)\n'
                    'def hello(who):\n    return "hello " + who\n' % name)
    cli = [BIN, "--endpoint", ",".join(cluster.endpoints), "--token", cluster.token, "app", "deploy", str(path)]
    # The Python that runs it is the one on PATH, as for a user in an activated venv.
    venv = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=venv)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "%s version 1: hello\n" % name
    try:
        assert flotilla.Function.lookup(name, "hello", client=client).remote("ann") == "hello ann"
    finally:
        flotilla.remove_app(name, client=client)
    # A Python that cannot run the package: a clear error, exit 1, nothing deployed.
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60,
                         env=dict(venv, FLOTILLA_PYTHON="/nonexistent/python3"))
    assert out.returncode == 1 and "pip install ./sdk/python" in out.stderr, out.stderr


def test_a_module_larger_than_an_environment_variable_ships(cluster: Cluster, client: flotilla.Client,
                                                            tmp_path: Path) -> None:
    # 200 KB of source: more than one environment variable may hold (128 KiB).
    path = tmp_path / "large.py"
    name = "pylarge-%d" % (os.getpid() % 100000)
    blob = base64.b64encode(os.urandom(150_000)).decode()
    path.write_text('import flotilla\napp = flotilla.App("%s")\nBLOB = "%s"\n@app.function(cpu=0.1, memory=64)\n'
                    'def size():\n    return len(BLOB)\n' % (name, blob))
    out = deploy_file(cluster, path)
    assert out.returncode == 0, out.stderr
    try:
        assert flotilla.Function.lookup(name, "size", client=client).remote() == len(blob)
    finally:
        flotilla.remove_app(name, client=client)


def test_an_input_that_does_not_unpickle_names_both_pythons(cluster: Cluster, pyapp: str) -> None:
    # Raw bytes from the Rust CLI, not a pickle: the runner says what it could not load, and
    # which Python pickled it against which one runs it.
    out = subprocess.run([BIN, "--endpoint", cluster.endpoints[0], "--token", cluster.token, "fn", "call",
                          pyapp + "/double", "--input", "not a pickle"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    here = "%d.%d" % sys.version_info[:2]
    assert "cannot unpickle the input (client Python %s, image Python 3." % here in out.stderr, out.stderr
