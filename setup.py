"""Build of the optional C reader for dense numeric JSON (``serving/server/_dense_json.c``).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and the server reads JSON with its pure-Python path (same results, slower).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("serving.server._dense_json", ["serving/server/_dense_json.c"],
                             optional=True)])
