"""Resumable training state: model + optimizer + counters + history in one tf.train.Checkpoint.

Saved every ``checkpoint_every_steps`` steps and at each epoch end by a
``tf.train.CheckpointManager`` (which writes the data files first and the ``checkpoint`` index
last, so a ``kill -9`` mid-save leaves the previous checkpoint usable). The state holds:

* ``model`` and ``optimizer`` variables (incl. the optimizer's ``iterations`` and moments, and
  the loss-scale state under mixed precision);
* ``global_step`` (steps done in total), ``epoch`` (epochs completed) and ``step_in_epoch``
  (steps done in the current epoch — the data position: the resumed epoch skips that many
  batches);
* ``history``: the per-epoch logs so far as a JSON string (for metrics.json and plots).

Randomness: the model's own random state (Keras ``SeedGenerator`` variables of augmentation and
dropout layers) is part of the model and restored with it; the trainer replays the tf.data
reshuffle state to the resumed epoch and skips the batches already consumed, so a resumed run
sees the same batches in the same order as an uninterrupted one.

Multi-worker: every worker calls ``save`` (variables may need collective reads); the chief
saves into the run's ``checkpoints/``, the others into a scratch directory (see
:class:`pipelines.rundir.RunDir`). Every worker restores from the chief's directory.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import tensorflow as tf

__all__ = ["TrainState"]


class TrainState:
    """Counters + checkpoint manager around a model and optimizer.

    Create it OUTSIDE the strategy scope: the counters are plain host variables updated by the
    Python loop, the model/optimizer variables are whatever the strategy made them.
    """

    def __init__(self, model, optimizer, *, read_dir: pathlib.Path, write_dir: pathlib.Path,
                 max_to_keep: int = 2):
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            global_step=self.global_step,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            history=self.history_json,
        )
        self.read_dir = pathlib.Path(read_dir)
        self.write_dir = pathlib.Path(write_dir)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.write_dir), max_to_keep=max_to_keep,
            step_counter=self.global_step,
        )

    # -- history ------------------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, Any]]:
        return json.loads(self.history_json.numpy().decode())

    def append_history(self, logs: dict[str, Any]) -> None:
        hist = self.history
        hist.append({k: float(v) for k, v in logs.items()})
        self.history_json.assign(json.dumps(hist))

    # -- save / restore -----------------------------------------------------------------------
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(str(self.read_dir))

    def restore_latest(self) -> str | None:
        """Restore the newest checkpoint of the run (if any); returns its path or None."""
        path = self.latest()
        if path is not None:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.global_step.numpy()))
