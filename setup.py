"""Build of the optional C parts of the server (``serving/server/*.c``).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and the server uses its pure-Python paths (same results, slower):

- ``_dense_json``: the reader and writer of dense numeric JSON;
- ``_http_front``: the REST front end's HTTP/1.1 connections on a native I/O thread (Linux: epoll
  and eventfd); without it, ``aio_http`` serves them on the event loop.
"""
import sys

from setuptools import Extension, setup

CORE = ["serving/server/_buf.h", "serving/server/_dense_core.h"]
extensions = [Extension("serving.server._dense_json", ["serving/server/_dense_json.c"],
                        depends=CORE, optional=True)]
if sys.platform.startswith("linux"):
    extensions.append(Extension("serving.server._http_front", ["serving/server/_http_front.c"],
                                depends=CORE, optional=True))
setup(ext_modules=extensions)
