"""The ksparse pipeline end to end on tiny real data (mnist5k subset, small autoencoder)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from pipelines import ksparse
from pipelines.cli import main as cli_main
from pipelines.cli import run_sweep
from pipelines.config import ConfigError, apply_overrides
from pipelines.registry import get_spec


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides) -> ksparse.KSparseConfig:
    values = dict(units=24, k=4, alpha=2.0, epochs=2, batch_size=32, max_train_examples=96,
                  learning_rate=1e-2, validation_steps=1, verbose=0, data_dir=data_dir,
                  plot_filters=16, classifier_max_iter=50, checkpoint_every_steps=1000)
    values.update(overrides)
    return ksparse.KSparseConfig(**values)


def test_spec_is_registered_and_config_validates():
    spec = get_spec("ksparse")
    assert spec is ksparse.SPEC and spec.config_class is ksparse.KSparseConfig
    config = spec.default_config()
    assert (config.units, config.k, config.alpha, config.dataset) == (1000, 25, 3.0, "mnist5k")
    assert apply_overrides(config, ["k=70", "k_start=100"]).k_start == 100
    with pytest.raises(ConfigError, match=r"'k'.*1001"):
        apply_overrides(config, ["k=1001"])
    with pytest.raises(ConfigError, match=r"'k_start'.*10"):
        apply_overrides(config, ["k_start=10"])  # below k=25
    with pytest.raises(ConfigError, match=r"'alpha'.*0.5"):
        apply_overrides(config, ["alpha=0.5"])


def test_model_reconstructs_raw_pixels_and_export_model_names(data_dir):
    config = tiny_config(data_dir)
    model = ksparse.build_model(config)
    assert [t.name for t in model.inputs] == ["image"]
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    ae = ksparse.autoencoder_of(model)
    flat = images.reshape(3, -1) / 255.0
    np.testing.assert_allclose(model(images), ae(flat), rtol=1e-5, atol=1e-6)

    exported = ksparse.build_export_model(config, model)
    assert [t.name for t in exported.inputs] == ["image"]
    reconstruction, code = exported(images)
    assert reconstruction.shape == (3, 28, 28, 1) and code.shape == (3, 24)
    # the reconstruction decodes the k = 4 largest, in pixel units
    np.testing.assert_allclose(reconstruction.numpy().reshape(3, -1),
                               255.0 * ae(flat).numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ae(flat), ae.decode(ae.encode(flat, training=True)),
                               rtol=1e-6, atol=1e-7)
    # the code is the alpha·k encoding: round(2.0 · 4) = 8 non-zeros per image
    assert ((code.numpy() != 0).sum(-1) == 8).all()
    np.testing.assert_allclose(code, ae.encode(flat), rtol=1e-6)


def test_datasets_target_the_flattened_image(data_dir):
    config = tiny_config(data_dir)
    datasets = ksparse.make_datasets(config)
    features, target = next(iter(datasets.test))
    assert features["image"].shape[1:] == (28, 28, 1) and target.shape[1:] == (784,)
    np.testing.assert_allclose(target.numpy(),
                               features["image"].numpy().reshape(-1, 784) / 255.0, rtol=1e-6)
    assert datasets.info["num_train_examples"] == 96


def test_train_end_to_end_metrics_plots_and_export(data_dir, tmp_path):
    config = tiny_config(data_dir, k_start=12)
    result = ksparse.train(config, tmp_path)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("loss", "val_loss", "test_loss", "test_reconstruction_mse",
                "test_classification_error", "train_classification_error", "active_units"):
        assert key in metrics["metrics"], key
        assert math.isfinite(metrics["metrics"][key]), (key, metrics["metrics"][key])
    assert 0.0 <= metrics["metrics"]["test_classification_error"] <= 1.0
    assert 0 < metrics["metrics"]["active_units"] <= 24
    assert metrics["test"]["test_classification_error"] == \
        metrics["metrics"]["test_classification_error"]
    # the trainer's test loss is the same MSE (reconstruction from the k largest)
    np.testing.assert_allclose(metrics["metrics"]["test_reconstruction_mse"],
                               metrics["metrics"]["test_loss"], rtol=1e-4)
    for name in ("filters.png", "reconstructions.png"):
        png = result.run_dir / "plots" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    # the schedule left the model at the target k
    assert ksparse.autoencoder_of(result.model).k == 4

    # exported SavedModel: raw pixels in, named reconstruction and code out
    assert result.export_path is not None and (result.export_path / "saved_model.pb").exists()
    loaded = tf.saved_model.load(str(result.export_path))
    serve = loaded.signatures["serving_default"]
    images = np.zeros((2, 28, 28, 1), np.float32)
    images[:, 8:20, 12:16, 0] = 255.0
    outputs = serve(image=tf.constant(images))
    assert set(outputs) == {"reconstruction", "code"}
    assert outputs["reconstruction"].shape == (2, 28, 28, 1)
    assert outputs["code"].shape == (2, 24)
    assert ((outputs["code"].numpy() != 0).sum(-1) <= 8).all()


def test_evaluate_matches_a_numpy_recomputation(data_dir, tmp_path):
    config = tiny_config(data_dir)
    model = ksparse.build_model(config)
    metrics = ksparse.evaluate(config, model, tmp_path / "plots")
    splits = ksparse._load_splits(config)
    x_test, _ = ksparse._arrays(splits.test)
    ae = ksparse.autoencoder_of(model)
    kernel, bias, decoder_bias = (v.numpy() for v in ae.trainable_weights)
    z = x_test @ kernel + bias
    ranked = -np.sort(-z, axis=1)  # no exact ties in float data
    code_k = np.where(z >= ranked[:, 3:4], z, 0.0)  # k = 4
    code_alpha_k = np.where(z >= ranked[:, 7:8], z, 0.0)  # alpha·k = 8
    recon = code_k @ kernel.T + decoder_bias
    np.testing.assert_allclose(metrics["test_reconstruction_mse"],
                               np.mean((x_test - recon) ** 2), rtol=1e-4)
    assert metrics["active_units"] == np.count_nonzero((code_alpha_k != 0).any(axis=0))
    assert (tmp_path / "plots" / "filters.png").exists()


def test_sweep_over_two_k_values(data_dir, tmp_path):
    """The paper's sweep goes through the core's --sweep: each run gets the ksparse evaluation."""
    base = tiny_config(data_dir, epochs=1, max_train_examples=64, export=False, run="s")
    summary = run_sweep(base, "k", [3, 6], tmp_path)
    assert summary["values"] == [3, 6]
    assert [row["run"] for row in summary["runs"]] == ["s-k-3", "s-k-6"]
    for row in summary["runs"]:
        assert math.isfinite(row["metrics"]["test_classification_error"])
        assert math.isfinite(row["metrics"]["test_reconstruction_mse"])
    table = (tmp_path / "runs" / "ksparse" / "sweeps" / "s-k.md").read_text()
    assert "| 3 |" in table and "| 6 |" in table and "test_classification_error" in table
    saved = json.loads((tmp_path / "runs" / "ksparse" / "sweeps" / "s-k.json").read_text())
    assert [row["value"] for row in saved["runs"]] == [3, 6]


@pytest.mark.parametrize("sweep, named", [("k=3,1001", "1001"), ("k=3,abc", "abc")])
def test_cli_rejects_a_bad_sweep_before_training(sweep, named, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli_main(["ksparse", "--sweep", sweep, "--workdir", str(tmp_path)])
    assert info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # rejected before the first run trained
