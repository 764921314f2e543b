"""Worker process for the multi-worker test: ``python _mw_worker.py WORKDIR DATA_DIR OUT.npz``.

Reads TF_CONFIG from the environment (set by the test), trains the lenet5 pipeline for a few
steps on a slice of mnist5k with MultiWorkerMirroredStrategy through ``pipelines.trainer.train``
and saves the final weights and the per-step losses to OUT.npz.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.strategy import select_strategy  # noqa: E402


def main(workdir: str, data_dir: str, out: str) -> None:
    strategy = select_strategy()  # first TF call in the process (multi-worker requirement)
    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)

    import keras

    from pipelines.lenet5 import SPEC
    from pipelines.trainer import train

    losses: list[float] = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    config = SPEC.default_config(
        epochs=2, batch_size=32, max_train_examples=128, augment=False, lr_schedule="constant",
        learning_rate=3e-3, validation_steps=2, test=False, export=False, verbose=0,
        checkpoint_every_steps=3, data_dir=data_dir,
    )
    result = train(config, workdir, strategy=strategy, callbacks=[Record()])
    weights = result.model.get_weights()
    np.savez(out, losses=np.array(losses), global_step=result.global_step,
             num_replicas=strategy.num_replicas_in_sync,
             **{f"w{i}": w for i, w in enumerate(weights)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
