"""Write a Flotilla worker-mode function in Python: one file, no dependencies.

A function with ``mode = "worker"`` runs this process once per replica; the node sends
inputs as frames on stdin and reads results as frames on stdout, so whatever is slow to
set up (a model load) happens once. Print logs to stderr, never to stdout.

    import flotilla_worker

    model = load_model()                      # once per replica

    def handle(data: bytes) -> bytes:
        return model.run(data)                # raise to fail this input

    flotilla_worker.serve(handle)

Frame (big-endian): u32 length of the rest | u8 kind | u64 id | payload.
Kind 1 = request (input), 2 = ok (output), 3 = error (UTF-8 message). The same protocol is
documented in the Rust SDK (``flotilla::worker``).
"""

import struct
import sys
import traceback

MAX_PAYLOAD = 4 << 20
_HEADER = struct.Struct(">IBQ")  # length, kind, id
REQUEST, OK, ERROR = 1, 2, 3


def _read_exact(stream, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None if not buf else bytes(buf)
        buf.extend(chunk)
    return bytes(buf)


def _write(stream, kind, ident, payload):
    stream.write(_HEADER.pack(9 + len(payload), kind, ident) + payload)
    stream.flush()


def serve(handler):
    """Answers every request on stdin with ``handler(input: bytes) -> bytes`` until EOF.

    An exception fails that one input with its message; the worker keeps serving.
    """
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the real stdout: route stray prints to stderr.
    sys.stdout = sys.stderr
    while True:
        head = _read_exact(stdin, _HEADER.size)
        if head is None:
            return
        if len(head) < _HEADER.size:
            raise SystemExit("flotilla_worker: truncated frame header")
        length, kind, ident = _HEADER.unpack(head)
        if kind != REQUEST or length < 9 or length - 9 > MAX_PAYLOAD:
            raise SystemExit("flotilla_worker: unexpected frame (kind %d, length %d)" % (kind, length))
        data = _read_exact(stdin, length - 9) if length > 9 else b""
        if data is None or len(data) != length - 9:
            raise SystemExit("flotilla_worker: truncated frame")
        try:
            out = handler(data)
            if isinstance(out, str):
                out = out.encode()
            if len(out) > MAX_PAYLOAD:
                raise ValueError("output of %d bytes is over the limit of %d" % (len(out), MAX_PAYLOAD))
            _write(stdout, OK, ident, bytes(out))
        except Exception as e:  # noqa: BLE001 - any failure of the handler fails the input
            traceback.print_exc(file=sys.stderr)
            _write(stdout, ERROR, ident, ("%s: %s" % (type(e).__name__, e)).encode())
