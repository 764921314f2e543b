"""Status codes and their mapping to gRPC and HTTP, the way TensorFlow Serving maps them.

Every failure inside the server is a :class:`ServingError` carrying a canonical code
(``tensorflow.error.Code`` numbering, the same as ``grpc.StatusCode``) and a message. The front ends
turn it into a gRPC status (``context.abort(code, message)``) or an HTTP response
``{"error": message}`` with TF Serving's status mapping (``http_server.cc``'s ``ToHTTPStatusCode``):

=====================  ====  =====================  ====
code                   HTTP  code                   HTTP
=====================  ====  =====================  ====
OK                     200   FAILED_PRECONDITION    400
CANCELLED              499   ABORTED                409
UNKNOWN                500   OUT_OF_RANGE           400
INVALID_ARGUMENT       400   UNIMPLEMENTED          501
DEADLINE_EXCEEDED      504   INTERNAL               500
NOT_FOUND              404   UNAVAILABLE            503
ALREADY_EXISTS         409   DATA_LOSS              500
PERMISSION_DENIED      403   UNAUTHENTICATED        401
RESOURCE_EXHAUSTED     429
=====================  ====  =====================  ====
"""

from __future__ import annotations

import enum

import grpc


class Code(enum.IntEnum):
    """Canonical status codes (``tensorflow.error.Code`` == ``grpc.StatusCode`` numbering)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

_GRPC_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}


class ServingError(Exception):
    """A request failure with a canonical status ``code`` and a client-facing ``message``."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _GRPC_BY_VALUE[int(self.code)]

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingError:
    return ServingError(Code.UNAVAILABLE, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(Code.UNIMPLEMENTED, message)


def from_exception(exc: BaseException) -> ServingError:
    """Map any exception raised while serving to a ServingError (TF errors keep their code)."""
    if isinstance(exc, ServingError):
        return exc
    try:
        import tensorflow as tf

        if isinstance(exc, tf.errors.OpError):
            return ServingError(Code(exc.error_code), exc.message)
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        pass
    if isinstance(exc, (ValueError, TypeError)):
        return ServingError(Code.INVALID_ARGUMENT, str(exc))
    return ServingError(Code.INTERNAL, f"{type(exc).__name__}: {exc}")
