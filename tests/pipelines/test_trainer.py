"""train(config, workdir): run directory, metrics, callbacks, export, resume-after-finish."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from pipelines.trainer import train
from tests.pipelines._helpers import mnist5k_dir, tiny_config  # noqa: F401


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch, logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", None))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist5k_dir):  # noqa: F811
    workdir = tmp_path_factory.mktemp("work")
    rec = Recorder()
    config = tiny_config(mnist5k_dir, run="r1")
    result = train(config, workdir, callbacks=[rec])
    return workdir, config, result, rec


def test_run_directory_contents(finished):
    workdir, config, result, _ = finished
    run = workdir / "runs" / "lenet5" / "r1"
    assert result.run_dir == run
    assert yaml.safe_load((run / "config.yaml").read_text())["max_train_examples"] == 96
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-6")
    for split in ("train", "validation"):
        events = list((run / "tensorboard" / split).glob("events.out.tfevents.*"))
        assert events, split
    tags = set()
    for event_file in (run / "tensorboard" / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert {"training_curves.png", "loss.png", "accuracy.png"} <= set(pngs)
    assert (run / "plots" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and metrics["steps_per_epoch"] == 3
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]) == 2
    assert metrics["resumed_from_step"] == 0
    m = metrics["metrics"]
    assert set(m) >= {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert m["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])


def test_callbacks_see_every_step_and_epoch(finished):
    _, _, result, rec = finished
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    assert [e[1] for e in rec.events if e[0] == "epoch_begin"] == [0, 1]
    assert [e[1] for e in rec.events if e[0] == "batch"] == [0, 1, 2, 0, 1, 2]
    last = [e for e in rec.events if e[0] == "epoch_end"][-1][2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(last)
    losses = [e[2] for e in rec.events if e[0] == "batch"]
    assert losses[-1] < losses[0]  # it learns
    assert result.history[-1]["loss"] == pytest.approx(last["loss"])


def test_test_metrics_match_keras_evaluate(finished, mnist5k_dir):  # noqa: F811
    """The loop's test accuracy equals a plain Keras prediction on the test split."""
    from pipelines import data

    _, _, result, _ = finished
    xs, ys = zip(*data.load("mnist5k", data_dir=mnist5k_dir).test.as_numpy_iterator(),
                 strict=True)
    probs = result.model.predict(np.stack(xs), verbose=0)
    accuracy = float(np.mean(np.argmax(probs, -1) == np.array(ys)))
    assert result.metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_export_named_signature_on_raw_pixels(finished, mnist5k_dir):  # noqa: F811
    workdir, _, result, _ = finished
    assert result.export_path == workdir / "models" / "lenet5" / "1"
    loaded = tf.saved_model.load(str(result.export_path))
    fn = loaded.signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == ["image"]
    assert {"probabilities", "classes"} <= set(fn.structured_outputs)
    assert "classify" in loaded.signatures
    raw = np.random.default_rng(0).uniform(0, 255, (3, 28, 28, 1)).astype(np.float32)
    out = fn(image=tf.constant(raw))
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               result.model.predict(raw, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(out["classes"].numpy(), out["probabilities"].numpy().argmax(-1))


def test_rerun_finished_run_and_new_run_never_overwrite(finished, mnist5k_dir):  # noqa: F811
    workdir, config, first, _ = finished
    v1 = workdir / "models" / "lenet5" / "1"
    before = {p: p.stat().st_mtime_ns for p in v1.rglob("*")}
    again = train(config, workdir)  # same run: already finished → no training, no new export
    assert again.resumed_from_step == 6 and again.global_step == 6
    assert again.export_path == v1
    other = train(tiny_config(mnist5k_dir, run="r2", epochs=1), workdir)
    assert other.export_path == workdir / "models" / "lenet5" / "2"
    assert {p: p.stat().st_mtime_ns for p in v1.rglob("*")} == before
    assert sorted(os.listdir(workdir / "models" / "lenet5")) == ["1", "2"]


def test_resume_refuses_another_config_but_trains_further_epochs(tmp_path, mnist5k_dir,  # noqa: F811
                                                                  capsys):
    from pipelines.cli import main
    from pipelines.config import ConfigError

    first = train(tiny_config(mnist5k_dir, run="r", epochs=1, export=False), tmp_path)
    run = tmp_path / "runs" / "lenet5" / "r"
    saved = (run / "config.yaml").read_bytes()
    checkpoint = tf.train.latest_checkpoint(str(run / "checkpoints"))
    changed = tiny_config(mnist5k_dir, run="r", epochs=1, export=False, dense_units=(64, 32),
                          learning_rate=1e-3)
    with pytest.raises(ConfigError, match=r"run .*r was trained with another config "
                                          r"\(dense_units: \[120, 84\] → \[64, 32\]; "
                                          r"learning_rate: 0.003 → 0.001\)"):
        train(changed, tmp_path)
    # nothing of the run was touched: not its config, not its checkpoints
    assert (run / "config.yaml").read_bytes() == saved
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) == checkpoint
    with pytest.raises(SystemExit) as exit_info:  # the command line: exit 2, one line
        main(["lenet5", "--workdir", str(tmp_path), "--run", "r", "--set", "dropout=0.5",
              "--set", f"data_dir={mnist5k_dir}", "--set", "max_train_examples=96",
              "--set", "batch_size=32", "--set", "validation_steps=2", "--set", "augment=false",
              "--set", "lr_schedule=constant", "--set", "learning_rate=0.003",
              "--set", "checkpoint_every_steps=2", "--set", "epochs=1", "--set", "verbose=0",
              "--set", "export=false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "was trained with another config (dropout: 0.0 → 0.5)" in err
    # more epochs and result-neutral keys may change: it resumes and trains the extra epoch
    further = train(tiny_config(mnist5k_dir, run="r", epochs=2, export=False, verbose=2,
                                keep_checkpoints=3), tmp_path)
    assert (first.global_step, further.resumed_from_step, further.global_step) == (3, 3, 6)


def test_stop_training_and_steps_cap(tmp_path, mnist5k_dir):  # noqa: F811
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    result = train(tiny_config(mnist5k_dir, epochs=3, steps_per_epoch=2, export=False,
                               test=False),
                   tmp_path, callbacks=[StopAfterFirstEpoch()])
    assert result.global_step == 2 and len(result.history) == 1
    assert result.export_path is None and "test_accuracy" not in result.metrics


@pytest.mark.parametrize("overrides", [
    {"mixed_precision": "on"},
    {"jit_compile": True, "augment": True},  # augmentation compiles under XLA too
    {"pooling": "l2", "optimizer": "sgd", "lr_schedule": "cosine", "warmup_epochs": 0.5},
])
def test_switches_train_and_export_float32(tmp_path, mnist5k_dir, overrides):  # noqa: F811
    result = train(tiny_config(mnist5k_dir, epochs=1, test=False, **overrides), tmp_path)
    assert np.isfinite(result.metrics["loss"])
    assert result.global_step == 3
    loaded = tf.saved_model.load(str(result.export_path))
    out = loaded.signatures["serving_default"](image=tf.zeros((2, 28, 28, 1)))
    assert out["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
