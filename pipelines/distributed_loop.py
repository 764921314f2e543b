"""One custom distributed training loop for every ``tf.distribute`` strategy.

Keras 3 ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so
the trainer runs this loop instead — the same code on a laptop (default strategy), on several
GPUs (``MirroredStrategy``) and on a cluster (``MultiWorkerMirroredStrategy``).

Per step, on each replica r holding ``n_r`` of the step's ``N = Σ n_r`` examples::

    ℓ_i       = loss(y_i, f(x_i)) averaged over non-batch axes            (per example)
    L_r       = Σ_{i∈r} w_i ℓ_i / N  +  Σ model.losses / R                 (R replicas)
    g_r       = ∂L_r/∂θ   (scaled by the loss scale under mixed precision, then unscaled)
    θ        ← optimizer(θ, Σ_r g_r)     (the Keras optimizer all-reduces the gradients)
    loss_step = Σ_r L_r  (= the global mean loss, ``strategy.reduce(SUM)``)

``N`` comes from an all-reduce of the replica batch sizes, so a short last batch is weighted
exactly like the rest. The forward/backward part can be XLA-compiled (``jit_compile``); the
gradient all-reduce and the optimizer update stay outside XLA (collectives).

Callbacks: a ``keras.callbacks.CallbackList`` with the model set receives the usual
``on_train_begin/end``, ``on_epoch_begin/end`` (logs ``loss``, metric names and ``val_*``),
``on_train_batch_begin/end`` (logs: running epoch means, as in ``fit``),
``on_test_begin/end``; ``model.stop_training = True`` stops
after the current step. A ``ProgbarLogger`` is added when ``verbose``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = ["DistributedLoop"]


def _first(structure: Any) -> tf.Tensor:
    return tf.nest.flatten(structure)[0]


class DistributedLoop:
    """Train/evaluate ``model`` with ``optimizer`` and ``loss`` under ``strategy``.

    Build it inside ``strategy.scope()`` (metrics and the loss tracker create variables).

    Args:
        strategy: any ``tf.distribute.Strategy``.
        model: a built Keras model (created under the same strategy scope).
        optimizer: a Keras optimizer (a ``LossScaleOptimizer`` under mixed precision).
        loss: a ``keras.losses.Loss``; its ``reduction`` is set to None (per-example values).
        metrics: ``keras.metrics.Metric`` objects updated on every step.
        jit_compile: XLA-compile the per-replica forward/backward computation.
    """

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model, optimizer,
                 loss: keras.losses.Loss, metrics: Sequence[keras.metrics.Metric] = (),
                 *, jit_compile: bool = False):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss = loss
        self.loss.reduction = None
        self.metrics = list(metrics)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.jit_compile = bool(jit_compile)
        self._forward_backward = tf.function(self._forward_backward_impl,
                                             jit_compile=self.jit_compile)
        self._forward = tf.function(self._forward_impl, jit_compile=self.jit_compile)
        self._train_step = tf.function(self._train_step_impl)
        self._train_step_from = tf.function(self._train_step_from_impl)
        self._eval_step = tf.function(self._eval_step_impl)

    # -- per-replica maths ---------------------------------------------------------------------
    def _scaled_loss(self, y, y_pred, sample_weight, global_n):
        per_example = self.loss(y, y_pred)
        per_example = tf.cast(per_example, tf.float32)
        if per_example.shape.rank and per_example.shape.rank > 1:
            per_example = tf.reduce_mean(per_example, axis=list(range(1, per_example.shape.rank)))
        if sample_weight is not None:
            sw = tf.cast(sample_weight, tf.float32)
            if sw.shape.rank and sw.shape.rank > 1:
                sw = tf.reduce_mean(sw, axis=list(range(1, sw.shape.rank)))
            per_example = per_example * sw
        return tf.reduce_sum(per_example) / tf.maximum(global_n, 1.0)

    def _regularization(self):
        if not self.model.losses:
            return tf.constant(0.0)
        reg = tf.add_n([tf.cast(x, tf.float32) for x in self.model.losses])
        return reg / tf.cast(self.strategy.num_replicas_in_sync, tf.float32)

    def _model_inputs(self, x):
        """A one-input model gets its tensor (from ``{name: tensor}``), others the dict."""
        inputs = getattr(self.model, "inputs", None)
        if isinstance(x, dict) and inputs is not None and len(inputs) == 1 and len(x) == 1:
            name = getattr(inputs[0], "name", None)
            return x[name] if name in x else next(iter(x.values()))
        return x

    def _forward_backward_impl(self, x, y, sample_weight, global_n):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self.model(self._model_inputs(x), training=True)
            loss = self._scaled_loss(y, y_pred, sample_weight, global_n) + self._regularization()
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        return loss, grads, y_pred

    def _forward_impl(self, x, y, sample_weight, global_n):
        y_pred = self.model(self._model_inputs(x), training=False)
        return self._scaled_loss(y, y_pred, sample_weight, global_n), y_pred

    def _global_count(self, y):
        n = tf.cast(tf.shape(_first(y))[0], tf.float32)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, n)

    def _update_metrics(self, y, y_pred, sample_weight):
        for m in self.metrics:
            m.update_state(y, y_pred, sample_weight=sample_weight)

    def _replica_train(self, data):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        global_n = self._global_count(y)
        loss, grads, y_pred = self._forward_backward(x, y, sw, global_n)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        self._update_metrics(y, y_pred, sw)
        return loss, global_n

    def _replica_eval(self, data):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        global_n = self._global_count(y)
        loss, y_pred = self._forward(x, y, sw, global_n)
        self._update_metrics(y, y_pred, sw)
        return loss, global_n

    # -- cross-replica steps --------------------------------------------------------------------
    def _reduce(self, per_replica):
        loss, global_n = per_replica
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        n = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, global_n, axis=None)
        self.loss_tracker.update_state(loss, sample_weight=n)
        return loss

    def _train_step_impl(self, data):
        return self._reduce(self.strategy.run(self._replica_train, args=(data,)))

    def _train_step_from_impl(self, iterator):
        # Fetching inside the graph (as Keras's fit does) keeps GetNext off the Python path.
        return self._train_step_impl(next(iterator))

    def train_step(self, data):
        """One distributed training step on ``data`` (a distributed batch or plain tensors
        under the default strategy); returns the global mean loss of the step."""
        return self._train_step(data)

    def train_step_from(self, iterator):
        """One distributed training step on the next batch of a distributed iterator."""
        return self._train_step_from(iterator)

    def _eval_step_impl(self, data):
        return self._reduce(self.strategy.run(self._replica_eval, args=(data,)))

    # -- metrics ----------------------------------------------------------------------------------
    def reset_metrics(self) -> None:
        self.loss_tracker.reset_state()
        for m in self.metrics:
            m.reset_state()

    def metric_results(self, prefix: str = "") -> dict[str, float]:
        logs = {prefix + "loss": float(self.loss_tracker.result())}
        for m in self.metrics:
            result = m.result()
            if isinstance(result, dict):
                for k, v in result.items():
                    logs[prefix + k] = float(v)
            else:
                logs[prefix + m.name] = float(result)
        return logs

    # -- data ------------------------------------------------------------------------------------
    def distribute(self, dataset: tf.data.Dataset):
        """Shard a globally batched dataset across workers (by data) and replicas."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    @staticmethod
    def replay_epochs(dataset: tf.data.Dataset, epochs: int) -> None:
        """Advance a reshuffling dataset's per-epoch order by ``epochs`` epochs (on resume).

        ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws each epoch's order from a
        seed generator that advances once per iterator: opening ``epochs`` iterators (one
        element each) makes the next epoch's order the one an uninterrupted run would see.
        """
        for _ in range(epochs):
            next(iter(dataset.take(1)), None)

    # -- loops ------------------------------------------------------------------------------------
    def train_epoch(self, dataset: tf.data.Dataset, *, epoch: int, steps: int, start_step: int,
                    callbacks: keras.callbacks.CallbackList,
                    on_step_end: Callable[[int], None] | None = None) -> dict[str, float]:
        """Run steps ``start_step .. steps-1`` of ``epoch`` (skipping the consumed batches).

        ``on_step_end(step_in_epoch_done)`` runs after each step (checkpointing). Returns the
        train logs of the steps run in this call.
        """
        self.reset_metrics()
        remaining = steps - start_step
        if remaining <= 0:
            return self.metric_results()
        ds = dataset.skip(start_step).take(remaining) if start_step else dataset.take(remaining)
        iterator = iter(self.distribute(ds))
        for batch in range(start_step, steps):
            callbacks.on_train_batch_begin(batch)
            try:
                self._train_step_from(iterator)
            except tf.errors.OutOfRangeError:  # fewer batches than counted: end the epoch
                break
            # Running means over the epoch so far (what Keras's fit reports per batch).
            callbacks.on_train_batch_end(batch, self.metric_results())
            if on_step_end is not None:
                on_step_end(batch + 1)
            if getattr(self.model, "stop_training", False):
                break
        return self.metric_results()

    def evaluate(self, dataset: tf.data.Dataset, *, steps: int | None = None,
                 prefix: str = "val_", callbacks: keras.callbacks.CallbackList | None = None
                 ) -> dict[str, float]:
        """Loss and metrics over ``dataset`` (or its first ``steps`` batches), keys prefixed."""
        self.reset_metrics()
        if callbacks is not None:
            callbacks.on_test_begin()
        ds = dataset.take(steps) if steps else dataset
        for i, data in enumerate(self.distribute(ds)):
            if callbacks is not None:
                callbacks.on_test_batch_begin(i)
            loss = self._eval_step(data)
            if callbacks is not None:
                callbacks.on_test_batch_end(i, {"loss": float(loss)})
        logs = self.metric_results(prefix)
        if callbacks is not None:
            callbacks.on_test_end({k[len(prefix):]: v for k, v in logs.items()})
        return logs
