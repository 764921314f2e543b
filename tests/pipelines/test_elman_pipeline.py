"""The ``elman`` pipeline end to end on tiny data: every task trains, writes its extras, exports."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from pipelines import elman
from pipelines.config import ConfigError
from pipelines.registry import get_spec

TEXT = "the cat sat on the mat. " * 80  # 1,920 characters, 11 distinct


def _config(**kwargs):
    base = dict(
        epochs=3,
        batch_size=32,
        verbose=0,
        learning_rate=1e-2,
        lr_schedule="constant",
        embedding_dim=16,
        units=32,
        export=False,
    )
    base.update(kwargs)
    return elman.ElmanConfig(**base)


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("elman_char")
    text_file = root / "cat.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    config = _config(
        task="char_lm",
        text_file=str(text_file),
        seq_length=20,
        run="cat",
        sample_length=37,
        temperature=0.5,
        sample_prompt="the ",
        export=True,
    )
    return config, elman.train(config, root)


def test_registered_with_a_search_space():
    import dataclasses

    import keras_tuner

    assert get_spec("elman") is elman.SPEC
    hp = keras_tuner.HyperParameters()
    overrides = elman.SPEC.search_space(hp)
    assert overrides == {"units": 128, "activation": "tanh", "embedding_dim": 64,
                         "learning_rate": 3e-3, "dropout": 0.0}
    config = dataclasses.replace(elman.ElmanConfig(task="word_boundary"), **overrides)
    assert config.resolved_units == 128


def test_activation_is_a_config_choice():
    import dataclasses

    config = elman.ElmanConfig(task="temporal_xor", activation="relu")
    model = elman.build_model(config)
    assert model.get_layer("elman").get_config()["activation"] == "relu"
    with pytest.raises(ConfigError, match="activation.*sigmoid"):
        dataclasses.replace(config, activation="sigmoid")


def test_char_lm_bits_per_char_and_samples(char_run):
    config, result = char_run
    vocab = elman.vocabulary(config)
    assert vocab == ("[UNK]", " ", ".", "a", "c", "e", "h", "m", "n", "o", "s", "t")
    payload = json.loads((result.run_dir / "metrics.json").read_text())
    bpc = payload["metrics"]["val_bits_per_char"]
    assert math.isfinite(bpc) and bpc < math.log2(len(vocab)) - 1.0  # well below uniform
    # bits per char is the cross-entropy loss (nats) in bits
    assert bpc == pytest.approx(payload["metrics"]["val_loss"] / math.log(2), rel=1e-4)
    samples = (result.run_dir / "samples.txt").read_text(encoding="utf-8")
    assert samples.startswith("the ") and len(samples) == len("the ") + 37 + 1  # + newline
    assert set(samples[4:-1]) <= set(vocab[1:])
    assert payload["evaluation"]["sample_temperature"] == 0.5


def test_sampling_with_temperature(char_run):
    config, result = char_run
    vocab = elman.vocabulary(config)
    out = elman.sample_text(result.model, vocab, prompt="the c", length=50, temperature=0.7)
    assert len(out) == 50 and set(out) <= set(vocab[1:])
    again = elman.sample_text(result.model, vocab, prompt="the c", length=50, temperature=0.7)
    assert out == again  # seeded
    hot = {
        elman.sample_text(result.model, vocab, prompt="the c", length=50, temperature=5.0, seed=s)
        for s in range(3)
    }
    assert len(hot) > 1  # a high temperature spreads the choices
    # A near-zero temperature is greedy: every step takes the argmax of the NumPy model.
    greedy = elman.sample_text(result.model, vocab, prompt="the c", length=5, temperature=1e-3)
    text = "the c"
    for ch in greedy:
        p = elman.next_char_probabilities(result.model, vocab, text)
        assert ch == vocab[int(np.argmax(p[1:])) + 1]
        text += ch
    with pytest.raises(ValueError, match="temperature"):
        elman.sample_text(result.model, vocab, prompt="a", length=3, temperature=0.0)
    with pytest.raises(ValueError, match="prompt"):
        elman.sample_text(result.model, vocab, prompt="", length=3)
    with pytest.raises(ValueError, match="length"):
        elman.sample_text(result.model, vocab, prompt="a", length=0)


def test_exported_char_model_takes_raw_text(char_run):
    config, result = char_run
    vocab = elman.vocabulary(config)
    loaded = tf.saved_model.load(str(result.export_path))
    serve = loaded.signatures["serving_default"]
    prompts = ["the cat sat on the m", "th", "Z"]  # different lengths; "Z" is out of vocabulary
    out = serve(text=tf.constant(prompts))
    probs = out["probabilities"].numpy()
    assert probs.shape == (3, len(vocab))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for row, prompt in zip(probs, prompts, strict=True):
        reference = elman.next_char_probabilities(result.model, vocab, prompt)  # NumPy steps
        np.testing.assert_allclose(row, reference, atol=1e-5)
    np.testing.assert_array_equal(out["classes"].numpy(), probs.argmax(axis=1))
    assert vocab[int(probs[0].argmax())] == "a"  # "...on the m" → "a" (mat)
    # TF Serving's classify method: tf.Example with a bytes feature "text"; labels = characters
    from serving.examples import make_examples

    examples = make_examples({"text": np.array([b"the cat sat on the m"], dtype=object)})
    classify = loaded.signatures["classify"]
    result = classify(inputs=tf.constant([e.SerializeToString() for e in examples]))
    assert [c.decode() for c in result["classes"].numpy()[0]] == list(vocab)
    np.testing.assert_allclose(result["scores"].numpy()[0], probs[0], atol=1e-6)


def test_default_task_needs_no_files():
    # `make train PIPELINE=elman` on a fresh, offline machine: the default task is generated
    config = elman.ElmanConfig()
    assert (config.task, config.text_file, config.resolved_dataset) == (
        "word_boundary", None, "word_boundary")
    splits = elman.make_datasets(elman.ElmanConfig(num_sequences=(4, 2, 2)))
    features, targets = next(iter(splits.train))  # a batch of the 4 windows of letter ids
    ids = features["ids"].numpy()
    assert ids.shape == targets.shape == (4, config.resolved_seq_length)
    np.testing.assert_array_equal(ids[:, 1:], targets.numpy()[:, :-1])  # next-letter targets


def test_word_boundary_error_peaks_at_onsets(tmp_path):
    config = _config(num_sequences=(160, 16, 16), run="wb", seed=1)  # word_boundary: the default
    result = elman.train(config, tmp_path)
    plot = result.run_dir / "plots" / "word_boundary_error.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((result.run_dir / "metrics.json").read_text())
    assert payload["dataset"] == "word_boundary"  # the resolved name, not the empty default
    extra = payload["evaluation"]
    # After brief training the letters inside a word are predictable, the next word is not.
    assert extra["onset_error_bits"] > extra["mid_word_error_bits"] + 0.5


def test_seq_mnist_classifier_exports_raw_pixels(tmp_path):
    config = _config(
        task="seq_mnist",
        epochs=1,
        steps_per_epoch=4,
        validation_steps=1,
        test=False,
        units=16,
        run="rows",
        export=True,
        data_dir=str(tmp_path),
    )
    result = elman.train(config, tmp_path)
    assert math.isfinite(result.metrics["val_accuracy"])
    serve = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    pixels = np.zeros((2, 28, 28), np.float32)
    pixels[1, 5:20, 12:15] = 255.0
    out = serve(image=tf.constant(pixels))
    np.testing.assert_allclose(
        out["probabilities"].numpy(), result.model.predict(pixels, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("task", ["temporal_xor", "letter_sequences"])
def test_elman_vector_tasks_train_and_plot(tmp_path, task):
    config = _config(task=task, epochs=1, num_sequences=(64, 8, 8), run=task)
    result = elman.train(config, tmp_path)
    assert (result.run_dir / "plots" / f"{task}_error.png").exists()
    extra = json.loads((result.run_dir / "metrics.json").read_text())["evaluation"]
    assert 0.0 <= extra["predictable_error"] <= 1.0
    assert 0.0 <= result.metrics["val_bit_accuracy"] <= 1.0


def test_char_lm_without_text_file_names_the_option(tmp_path):
    config = elman.ElmanConfig(task="char_lm")
    with pytest.raises(ConfigError, match="text_file"):
        elman.make_datasets(config)
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["elman", "--workdir", str(tmp_path), "--set", "task=char_lm"])
    assert exit_info.value.code == 2
    missing = elman.ElmanConfig(task="char_lm", text_file=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="does not exist"):
        elman.make_datasets(missing)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"task": "seq_mnist", "dataset": "text"}, "dataset"),
        ({"task": "seq_mnist", "seq_length": 10}, "seq_length"),
        ({"task": "temporal_xor", "seq_length": 10}, "seq_length"),
        ({"task": "word_boundary", "num_sequences": (1, 2)}, "num_sequences"),
        ({"task": "lstm"}, "task"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_config(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        elman.ElmanConfig(**kwargs)
