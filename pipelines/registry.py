"""Pipeline registry: name → module path, imported lazily (only the pipeline you run is loaded).

Each registered module exposes ``SPEC: pipelines.spec.PipelineSpec``. Unknown names raise
:class:`pipelines.config.ConfigError` with a one-line message listing the valid names.
"""

from __future__ import annotations

import importlib

from pipelines.config import ConfigError
from pipelines.spec import PipelineSpec

__all__ = ["PIPELINES", "pipeline_names", "get_spec", "register"]

#: Registered pipelines: name → importable module that defines ``SPEC``.
PIPELINES: dict[str, str] = {
    "lenet5": "pipelines.lenet5",
    "ksparse": "pipelines.ksparse",
    "elman": "pipelines.elman",
}


def pipeline_names() -> list[str]:
    """Registered pipeline names, in registration order."""
    return list(PIPELINES)


def register(name: str, module: str) -> None:
    """Register (or replace) a pipeline module under ``name``."""
    if not name or not name.isidentifier():
        raise ValueError(f"pipeline name must be an identifier, received {name!r}")
    PIPELINES[name] = module


def get_spec(name: str) -> PipelineSpec:
    """Import the module registered as ``name`` and return its ``SPEC``."""
    if name not in PIPELINES:
        raise ConfigError(
            f"unknown pipeline {name!r}; valid pipelines: {', '.join(PIPELINES)}"
        )
    module_name = PIPELINES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"pipeline {name!r} is registered but its module {module_name!r} is not installed"
            ) from None
        raise
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, PipelineSpec):
        raise TypeError(f"{module_name}.SPEC must be a PipelineSpec, found {type(spec).__name__}")
    if spec.name != name:
        raise TypeError(f"{module_name}.SPEC.name is {spec.name!r}, registered as {name!r}")
    return spec
