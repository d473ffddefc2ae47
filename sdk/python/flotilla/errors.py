"""The SDK's exceptions: one base class, :class:`Error`, and a subclass per thing a caller can do.

gRPC statuses are mapped here, in one place (:func:`from_rpc_error`), the same way the Rust
SDK maps them (``sdk/src/error.rs``): a status the node sent maps by its code, and a failure
to reach the node at all is :class:`Unavailable`, which the client retries on the next
endpoint.
"""

from __future__ import annotations

import grpc


class Error(Exception):
    """Base class of every error the SDK raises."""


class NotFound(Error):
    """The named thing (sandbox, app, function, call, snapshot, token) does not exist."""


class InvalidArgument(Error):
    """The request is wrong; the message names the field. Retrying will not help."""


class AlreadyExists(Error):
    """The name or id is taken (e.g. a live sandbox already has this name)."""


class FailedPrecondition(Error):
    """The request conflicts with the cluster's state (e.g. a sandbox that failed to start,
    a memory snapshot where the node has no CRIU, revoking the last token)."""


class NoCapacity(Error):
    """No node has room for the request (CPU, memory, GPUs). Retry once capacity frees up."""


class Unavailable(Error):
    """No endpoint could serve the request in time (nodes down, no leader). Safe to retry later."""


class Timeout(Error):
    """The call took longer than its deadline, or a function call is still running."""


class FunctionError(Error):
    """The function ran and failed (non-zero exit, timeout, an error from the worker), or the
    call was cancelled; the message says which."""


class Unauthenticated(Error):
    """The token was missing, wrong or revoked."""


class InternalError(Error):
    """The server failed in a way the caller cannot fix."""


_BY_CODE: dict[grpc.StatusCode, type[Error]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoCapacity,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
}


def from_rpc_error(err: grpc.aio.AioRpcError) -> Error:
    """The SDK error for a failed gRPC call, with the node's message."""
    code = err.code()
    message = err.details() or code.name.lower()
    kind = _BY_CODE.get(code)
    if kind is None:
        return InternalError("%s: %s" % (code.name, message))
    return kind(message)
