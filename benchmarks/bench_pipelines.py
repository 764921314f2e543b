"""Pipelines benchmarks: input throughput and LeNet-5 time-to-accuracy.

Rows (``rows(quick)``):

1. ``lenet5 train steps/s: tf.data vs in-memory`` — the trainer's distributed step fed by the
   real ``pipelines.data`` tf.data pipeline (mnist5k, shuffled, batched, prefetched, through
   ``strategy.experimental_distribute_dataset``) vs the same step fed one in-memory batch.
   Ratio = steps/s(tf.data) / steps/s(in-memory), goal ``>= 0.95`` ("never input-bound").
   Blocks of steps are interleaved (candidate, baseline, ...); the ratio is the median over
   rounds of the two blocks' time ratio.
2. ``time to 97% val accuracy (mnist5k)`` — ``pipelines.trainer.train`` with the default
   LeNet-5 config vs the keras-io ``mnist_convnet`` recipe (Conv32-pool-Conv64-pool-dropout-
   dense, Adam, batch 128, ``Model.fit``) on the same 4000 training images, both evaluated on
   the same 500 validation images after every epoch; the clock sums the epochs (training +
   validation) until validation accuracy first reaches 0.97. Goal ``<= 1.0``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from benchmarks.common import Row, interleaved_times, paired_ratio  # noqa: E402

TARGET = 0.97


def _data_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "deepline-bench-tfds")
    os.makedirs(path, exist_ok=True)
    return path


def input_throughput_row(quick: bool) -> Row:
    import tensorflow as tf

    from pipelines.distributed_loop import DistributedLoop
    from pipelines.lenet5 import SPEC
    from pipelines.optimizers import build_optimizer

    config = SPEC.default_config(data_dir=_data_dir(), verbose=0)
    datasets = SPEC.make_datasets(config)
    strategy = tf.distribute.get_strategy()
    model = SPEC.build_model(config)
    optimizer = build_optimizer(config, 10_000, 63, mixed_precision=False)
    loop = DistributedLoop(strategy, model, optimizer, SPEC.build_loss(config),
                           SPEC.build_metrics(config))
    data_iter = iter(loop.distribute(datasets.train.repeat()))
    in_memory = next(iter(datasets.train))  # one real batch, held as tensors
    block = 10 if quick else 25

    def run_tf_data():
        loss = None
        for _ in range(block):
            loss = loop.train_step_from(data_iter)
        return float(loss)

    def run_in_memory():
        loss = None
        for _ in range(block):
            loss = loop.train_step(in_memory)
        return float(loss)

    t_data, t_mem = interleaved_times([run_tf_data, run_in_memory], warmup=2,
                                      repeats=5 if quick else 15)
    # steps/s ratio per round = in-memory time / tf.data time
    return Row("lenet5 train steps/s: tf.data vs in-memory", "tf.data pipeline",
               "in-memory batch", block / statistics.median(t_data),
               block / statistics.median(t_mem), "steps/s", ">= 0.95",
               paired=paired_ratio(t_mem, t_data))


def _lenet5_time_to_target(max_epochs: int) -> tuple[float, int]:
    import keras

    from pipelines.lenet5 import SPEC
    from pipelines.trainer import train

    class StopAtTarget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs.get("val_accuracy", 0.0) >= TARGET:
                self.model.stop_training = True

    with tempfile.TemporaryDirectory() as workdir:
        result = train(SPEC.default_config(data_dir=_data_dir(), verbose=0, export=False,
                                           test=False, epochs=max_epochs, run="bench"),
                       workdir, callbacks=[StopAtTarget()])
    elapsed = 0.0
    for row in result.history:
        elapsed += row["time_s"]
        if row["val_accuracy"] >= TARGET:
            return elapsed, int(row["epoch"])
    return float("inf"), len(result.history)


def _keras_io_convnet_time_to_target(max_epochs: int) -> tuple[float, int]:
    """keras-io/examples/vision/mnist_convnet.py on the same splits (pixels / 255)."""
    import keras
    import numpy as np

    from pipelines import data

    splits = data.load("mnist5k", data_dir=_data_dir())

    def arrays(ds):
        xs, ys = zip(*ds.as_numpy_iterator(), strict=True)
        return np.stack(xs).astype("float32") / 255.0, keras.utils.to_categorical(ys, 10)

    x_train, y_train = arrays(splits.train)
    x_val, y_val = arrays(splits.validation)
    keras.utils.set_random_seed(42)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    elapsed = 0.0
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        hist = model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0,
                         validation_data=(x_val, y_val))
        elapsed += time.perf_counter() - start
        if hist.history["val_accuracy"][-1] >= TARGET:
            return elapsed, epoch
    return float("inf"), max_epochs


def time_to_accuracy_row(quick: bool) -> Row:
    max_epochs = 15 if quick else 30
    t_lenet, e_lenet = _lenet5_time_to_target(max_epochs)
    t_convnet, e_convnet = _keras_io_convnet_time_to_target(max_epochs)
    def label(name, seconds, epochs):
        reached = f"{epochs} ep" if seconds != float("inf") else f"not reached in {epochs} ep"
        return f"{name} ({reached})"

    return Row(
        f"time to {TARGET:.0%} val accuracy (mnist5k)",
        label("deepline lenet5", t_lenet, e_lenet),
        label("keras-io mnist_convnet", t_convnet, e_convnet),
        t_lenet, t_convnet, "s", "<= 1.0",
    )


def rows(quick: bool) -> list[Row]:
    return [input_throughput_row(quick), time_to_accuracy_row(quick)]


if __name__ == "__main__":
    import sys

    from benchmarks.common import markdown_table

    print(markdown_table("Pipelines", rows(quick="--quick" in sys.argv)))
