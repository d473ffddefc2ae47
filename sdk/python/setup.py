"""Build hook: generates the gRPC stubs of ``flotilla.v1`` from the repository's .proto files.

The .proto files live in ``proto/proto/flotilla/v1`` at the repository root. A build from the
source tree (``pip install ./sdk/python``) reads them there; an sdist carries a copy under
``proto/`` (made by the ``sdist`` command below), so a build from the sdist reads that copy.
``protoc`` writes ``flotilla/v1/control_pb2.py`` and friends straight into the build
directory: the proto package path ``flotilla/v1`` is this package's ``flotilla.v1``, so the
generated ``from flotilla.v1 import control_pb2`` imports resolve without rewriting.
"""

import os
import shutil
from importlib.metadata import version

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
# The services a client calls; peer.proto is cluster-internal.
PROTOS = ["flotilla/v1/control.proto", "flotilla/v1/worker.proto", "flotilla/v1/observe.proto"]


def proto_root():
    """The folder holding ``flotilla/v1/*.proto``: the repository's, else the sdist's copy."""
    for root in (os.path.join(HERE, "..", "..", "proto", "proto"), os.path.join(HERE, "proto")):
        if all(os.path.isfile(os.path.join(root, p)) for p in PROTOS):
            return os.path.normpath(root)
    raise SystemExit("flotilla: cannot find %s under ../../proto/proto or ./proto" % ", ".join(PROTOS))


def generate(out_dir):
    """Runs protoc (from grpcio-tools) on PROTOS into ``out_dir``."""
    from grpc_tools import protoc

    root = proto_root()
    os.makedirs(os.path.join(out_dir, "flotilla", "v1"), exist_ok=True)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", "-I" + root, "-I" + include, "--python_out=" + out_dir, "--pyi_out=" + out_dir,
            "--grpc_python_out=" + out_dir] + PROTOS
    if protoc.main(args) != 0:
        raise SystemExit("flotilla: protoc failed on %s" % ", ".join(PROTOS))
    init = os.path.join(out_dir, "flotilla", "v1", "__init__.py")
    with open(init, "w") as f:
        f.write('"""Generated gRPC stubs of the Flotilla API (from proto/, at package build)."""\n')


class BuildPy(build_py):
    """build_py that also generates the stubs into the build directory (the wheel takes
    everything there, so ``flotilla.v1`` needs no source folder)."""

    def run(self):
        generate(self.build_lib)
        super().run()


class Sdist(sdist):
    """sdist that carries a copy of the .proto files, so the sdist builds on its own."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for p in PROTOS:
            dest = os.path.join(base_dir, "proto", p)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(os.path.join(root, p), dest)


def runtime_requirements():
    """grpcio and protobuf at least as new as the grpcio-tools generating the stubs."""
    return ["grpcio>=%s" % version("grpcio-tools"), "protobuf>=%s" % version("protobuf")]


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist}, install_requires=runtime_requirements())
