"""kill -9 mid-epoch, rerun the same run → it continues from the last checkpoint and ends
exactly where an uninterrupted run ends (same steps, same batches, same weights)."""

import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines.trainer import train
from tests.pipelines._helpers import HERE, mnist5k_dir  # noqa: F401
from tests.pipelines._resume_run import resume_config


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)


def test_kill_9_mid_epoch_then_resume(tmp_path, mnist5k_dir):  # noqa: F811
    ckpt_dir = tmp_path / "runs" / "lenet5" / "default" / "checkpoints"
    proc = subprocess.Popen([sys.executable, str(HERE / "_resume_run.py"), str(tmp_path),
                             str(mnist5k_dir), "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        # Wait for a checkpoint inside the SECOND epoch (steps 11..19): resuming there needs
        # both the epoch's shuffle order and the position within it.
        while _latest_step(ckpt_dir) <= 10:
            if proc.poll() is not None:
                pytest.fail("training process exited before its first checkpoint:\n"
                            + proc.stdout.read()[-3000:])
            assert time.monotonic() < deadline, "no epoch-2 checkpoint within 180 s"
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup, no final save
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9
    killed_at = int(tf.train.latest_checkpoint(str(ckpt_dir)).rsplit("-", 1)[1])
    assert 10 < killed_at < 20  # mid-epoch 2

    counter = CountSteps()
    result = train(resume_config(mnist5k_dir), tmp_path, callbacks=[counter])
    assert result.resumed_from_step == killed_at
    assert result.steps_per_epoch == 10
    # Total steps equal an uninterrupted run: only the missing steps ran, continuing the epoch.
    assert result.global_step == 20
    assert len(counter.batches) == 20 - killed_at
    assert counter.batches[0] == killed_at % 10
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.history[-1]["global_step"] == 20

    uninterrupted = train(resume_config(mnist5k_dir), tmp_path / "uninterrupted")
    assert uninterrupted.global_step == 20
    for a, b in zip(uninterrupted.model.get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert result.metrics["val_loss"] == pytest.approx(uninterrupted.metrics["val_loss"],
                                                       rel=1e-4)


def _latest_step(ckpt_dir):
    path = tf.train.latest_checkpoint(str(ckpt_dir))
    return -1 if path is None else int(path.rsplit("-", 1)[1])
