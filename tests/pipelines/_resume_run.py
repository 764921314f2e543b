"""Training process for the resume test: ``python _resume_run.py WORKDIR DATA_DIR SLEEP_S``.

Trains :func:`resume_config` and sleeps ``SLEEP_S`` seconds after every step, so the test can
``kill -9`` it mid-epoch once a checkpoint exists.
"""

import os
import pathlib
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import keras  # noqa: E402

from tests.pipelines._helpers import tiny_config  # noqa: E402


def resume_config(data_dir):
    """2 epochs × 10 steps (160 images, batch 16), a checkpoint every 3 steps."""
    return tiny_config(data_dir, epochs=2, batch_size=16, max_train_examples=160,
                       checkpoint_every_steps=3, export=False, test=False, validation_steps=1)


class Sleep(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


if __name__ == "__main__":
    from pipelines.trainer import train

    workdir, data_dir, sleep_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    train(resume_config(data_dir), workdir, callbacks=[Sleep(sleep_s)])
