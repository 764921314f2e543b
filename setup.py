"""Build of the optional C parts of the server (``serving/server/*.c``).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and the server uses its pure-Python paths (same results, slower):

- ``_dense_json``: the reader and writer of dense numeric JSON;
- ``_predict_wire``: the reader and writer of dense Predict calls' protobuf wire format;
- ``_http_front``: the REST front end's HTTP/1.1 connections on a native I/O thread (Linux: epoll
  and eventfd); without it, ``aio_http`` serves them on the event loop;
- ``_grpc_front``: gRPC's HTTP/2 connections on a native I/O thread (Linux, and libnghttp2's
  headers: Debian/Ubuntu's ``libnghttp2-dev``, which ``make install`` asks apt-get for where it
  can); without it, ``grpcio``'s server serves gRPC.
"""
import os
import sys

from setuptools import Extension, setup

CORE = ["serving/server/_buf.h", "serving/server/_dense_core.h", "serving/server/_front.h",
        "serving/server/_listen.h"]
NGHTTP2_HEADER = "nghttp2/nghttp2.h"


def has_header(name: str) -> bool:
    """Whether ``name`` is in the compiler's usual include directories (or $CPATH's)."""
    dirs = ["/usr/include", "/usr/local/include", "/usr/include/x86_64-linux-gnu",
            "/usr/include/aarch64-linux-gnu", *os.environ.get("CPATH", "").split(os.pathsep)]
    return any(d and os.path.exists(os.path.join(d, name)) for d in dirs)


extensions = [Extension("serving.server._dense_json", ["serving/server/_dense_json.c"],
                        depends=CORE, optional=True),
              Extension("serving.server._predict_wire", ["serving/server/_predict_wire.c"],
                        optional=True)]
if sys.platform.startswith("linux"):
    extensions.append(Extension("serving.server._http_front", ["serving/server/_http_front.c"],
                                depends=CORE, optional=True))
    if has_header(NGHTTP2_HEADER):
        extensions.append(Extension("serving.server._grpc_front",
                                    ["serving/server/_grpc_front.c"], depends=CORE,
                                    libraries=["nghttp2"], optional=True))
setup(ext_modules=extensions)
