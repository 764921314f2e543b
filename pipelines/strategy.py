"""Pick the ``tf.distribute`` strategy for this process — one function, same code everywhere.

* ``TF_CONFIG`` names a cluster with more than one task → ``MultiWorkerMirroredStrategy``
  (collective all-reduce; every worker runs the same command with its own ``TF_CONFIG``);
* more than one local GPU → ``MirroredStrategy`` over all of them;
* otherwise (one GPU, or CPU) → the default strategy (``tf.distribute.get_strategy()``).

``MultiWorkerMirroredStrategy`` must be created before any other TensorFlow op runs in the
process, so call :func:`select_strategy` first thing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

__all__ = [
    "select_strategy", "cluster_spec_from_env", "is_chief", "worker_index", "strategy_name",
]


def cluster_spec_from_env(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Parsed ``TF_CONFIG`` (``{"cluster": {...}, "task": {"type", "index"}}``) or None.

    Raises ValueError naming TF_CONFIG when it is set but is not valid JSON with a cluster.
    """
    env = os.environ if environ is None else environ
    raw = env.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc}): received {raw!r}") from None
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict):
        raise ValueError(f"TF_CONFIG must hold a 'cluster' mapping, received {raw!r}")
    return tf_config


def _num_tasks(tf_config: dict[str, Any]) -> int:
    return sum(len(v) for k, v in tf_config["cluster"].items() if k in ("chief", "worker"))


def select_strategy(environ: dict[str, str] | None = None) -> tf.distribute.Strategy:
    """The strategy for this process (see the module docstring for the rule)."""
    tf_config = cluster_spec_from_env(environ)
    if tf_config is not None and _num_tasks(tf_config) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes run files: single-process, ``chief``, or ``worker`` 0."""
    task_type, task_id = _task(strategy)
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not
                                    _has_chief(strategy))


def _has_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = strategy.cluster_resolver
    return "chief" in resolver.cluster_spec().as_dict()


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index (0 without a cluster)."""
    _, task_id = _task(strategy)
    return int(task_id or 0)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """Public name of the strategy's kind (``MultiWorkerMirroredStrategy``, ``MirroredStrategy``,
    ``OneDeviceStrategy``, ``TPUStrategy`` or ``default``)."""
    for cls, name in ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                      (tf.distribute.MirroredStrategy, "MirroredStrategy"),
                      (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy")):
        if isinstance(strategy, cls):
            return name
    if type(strategy).__name__.startswith("TPUStrategy"):
        return "TPUStrategy"
    return "default"
