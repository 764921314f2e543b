"""deepline.pipelines — training pipelines: typed configs, tf.data inputs, one distributed loop.

    from pipelines import get_spec, train
    spec = get_spec("lenet5")
    result = train(spec.default_config(epochs=3), workdir=".")

See pipelines/README.md. Heavy modules (TensorFlow, Keras) load only when used.
"""

from __future__ import annotations

from pipelines.config import ConfigError, TrainConfig, resolve_config
from pipelines.registry import get_spec, pipeline_names
from pipelines.spec import Datasets, PipelineSpec

__all__ = [
    "ConfigError",
    "Datasets",
    "PipelineSpec",
    "TrainConfig",
    "get_spec",
    "pipeline_names",
    "resolve_config",
    "train",
]


def __getattr__(name: str):
    if name == "train":
        from pipelines.trainer import train

        return train
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
