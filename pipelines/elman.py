"""Elman (1990) simple recurrent networks on sequence tasks, selected by ``task``.

Every task runs the same core, built from ``layers.ElmanRNN``::

    inputs → [Embedding (ids) | Rescaling(1/255) (pixels)] → ElmanRNN(units) → Dense(out)

``task`` (config key), data and what the run directory gets:

``char_lm``
    character language model on a local text file (``text_file``, required; or
    ``dataset=tiny_shakespeare`` when TFDS has it). The text is split 90/5/5 by position,
    cut into windows of ``seq_length`` characters; the model predicts the next character at every
    step (softmax over the training vocabulary, ``[UNK]`` at id 0). ``metrics.json`` holds
    ``val_bits_per_char`` (mean −log2 p(next char)); ``samples.txt`` holds ``sample_length``
    characters sampled from the model at ``temperature`` after ``sample_prompt``.
    Export: input ``text`` (tf.string ``[batch]``, any length ≥ 1) → ``probabilities``
    ``[batch, vocab]`` of the character that follows each text, ``classes`` (argmax id) and a
    ``classify`` signature whose class names are the characters.
``word_boundary``
    Elman's word-segmentation task: sentences from a 15-word lexicon run together as a letter
    stream; next-letter prediction. Writes ``plots/word_boundary_error.png`` (per-letter
    prediction error, −log2 p, over a stretch of the test stream with word onsets marked: the
    error peaks at onsets, as in the paper's Figure 6) and ``onset_error_bits`` /
    ``mid_word_error_bits`` into ``metrics.json``. Exports like ``char_lm``.
``seq_mnist``
    row-by-row MNIST: 28 steps of 28 raw pixels (``dataset``: ``mnist5k``, offline, default;
    or ``mnist``). Export: ``image`` float32 ``[batch, 28, 28]`` in 0–255 → ``probabilities``,
    ``classes``, ``classify`` (task="classification").
``temporal_xor`` / ``letter_sequences``
    Elman's bit-stream XOR and b→ba, d→dii, g→guuu tasks (sigmoid outputs, binary
    cross-entropy). Writes ``plots/<task>_error.png`` (mean error by position in the cycle) and
    the mean error on predictable vs unpredictable steps into ``metrics.json``.

Run it: ``deepline-train elman --set task=char_lm --set text_file=book.txt`` (see
``pipelines/README.md``). ``pipelines.elman.train(config, workdir)`` is the same as the core
trainer plus the task's samples/plots/extra metrics (see :func:`train`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
from typing import Literal

import numpy as np

from pipelines.config import ConfigError, TrainConfig, option
from pipelines.spec import Datasets, PipelineSpec

__all__ = [
    "ElmanConfig",
    "SPEC",
    "build_export_model",
    "build_model",
    "evaluate_word_boundary",
    "make_datasets",
    "next_char_probabilities",
    "sample_text",
    "search_space",
    "train",
]

TASKS = ("char_lm", "word_boundary", "seq_mnist", "temporal_xor", "letter_sequences")
#: task → (valid datasets, default dataset)
TASK_DATASETS = {
    "char_lm": (("text", "tiny_shakespeare"), "text"),
    "word_boundary": (("word_boundary",), "word_boundary"),
    "seq_mnist": (("mnist5k", "mnist"), "mnist5k"),
    "temporal_xor": (("temporal_xor",), "temporal_xor"),
    "letter_sequences": (("letter_sequences",), "letter_sequences"),
}
DEFAULT_SEQ_LENGTH = {
    "char_lm": 100,
    "word_boundary": 20,
    "temporal_xor": 12,
    "letter_sequences": 12,
    "seq_mnist": 28,
}
DEFAULT_UNITS = {
    "char_lm": 256,
    "word_boundary": 32,
    "temporal_xor": 8,
    "letter_sequences": 20,
    "seq_mnist": 128,
}
TOKEN_TASKS = ("char_lm", "word_boundary")
VECTOR_TASKS = ("temporal_xor", "letter_sequences")
LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class ElmanConfig(TrainConfig):
    """Elman RNN configuration: every TrainConfig field plus the task, data and model knobs."""

    pipeline: str = option("elman", "pipeline name")
    task: Literal["char_lm", "word_boundary", "seq_mnist", "temporal_xor", "letter_sequences"] = (
        option("char_lm", "which sequence task to train")
    )
    dataset: str = option(
        "", "dataset; empty = the task's default (char_lm: text, seq_mnist: mnist5k)"
    )
    text_file: str | None = option(None, "char_lm: path of a local UTF-8 text file")
    seq_length: int | None = option(
        None,
        "steps per training window (default: char_lm 100, word_boundary 20, xor 12, "
        "letters 12; seq_mnist is always 28)",
        min=1,
    )
    num_sequences: tuple[int, ...] = option(
        (250, 25, 25), "Elman tasks: windows per split (train, validation, test)"
    )
    units: int | None = option(
        None,
        "hidden units (default: char_lm 256, word_boundary 32, temporal_xor 8, "
        "letter_sequences 20, seq_mnist 128)",
        min=1,
    )
    activation: Literal["tanh", "relu"] = option(
        "tanh", "recurrent activation g in h_t = g(x_t W_x + h_{t-1} W_h + b)"
    )
    embedding_dim: int = option(64, "char_lm/word_boundary: character embedding size", min=1)
    dropout: float = option(0.0, "dropout on the RNN inputs", min=0.0, max=0.95)
    epochs: int = option(20, "number of passes over the training split", min=1)
    batch_size: int = option(64, "GLOBAL batch size (split across replicas)", min=1)
    learning_rate: float = option(3e-3, "peak learning rate", min=0.0)
    temperature: float = option(0.8, "char_lm: sampling temperature for samples.txt", min=1e-3)
    sample_length: int = option(500, "char_lm: characters sampled into samples.txt", min=1)
    sample_prompt: str = option(
        "", "char_lm: text the sample continues (default: the first line of the validation text)"
    )
    shuffle_buffer: int = option(10_000, "shuffle buffer (examples)", min=1)
    data_dir: str | None = option(None, "TFDS data directory (default: $TFDS_DATA_DIR or ~)")

    def validate(self) -> None:
        super().validate()
        valid, _ = TASK_DATASETS[self.task]
        if self.dataset and self.dataset not in valid:
            raise ConfigError(
                f"config key 'dataset' must be one of {list(valid)} for task={self.task!r}, "
                f"received {self.dataset!r}"
            )
        if self.task == "seq_mnist" and self.seq_length not in (None, 28):
            raise ConfigError(
                f"config key 'seq_length' is fixed to 28 rows for task='seq_mnist', "
                f"received {self.seq_length!r}"
            )
        if self.task == "temporal_xor" and self.seq_length and self.seq_length % 3:
            raise ConfigError(
                "config key 'seq_length' must be a multiple of 3 for task='temporal_xor', "
                f"received {self.seq_length!r}"
            )
        if len(self.num_sequences) != 3 or min(self.num_sequences) < 1:
            raise ConfigError(
                "config key 'num_sequences' needs three positive ints (train, validation, test), "
                f"received {self.num_sequences!r}"
            )

    @property
    def resolved_dataset(self) -> str:
        return self.dataset or TASK_DATASETS[self.task][1]

    @property
    def resolved_seq_length(self) -> int:
        return self.seq_length or DEFAULT_SEQ_LENGTH[self.task]

    @property
    def resolved_units(self) -> int:
        return self.units or DEFAULT_UNITS[self.task]


def search_space(hp) -> dict:
    """The Elman KerasTuner search space → config overrides (see ``PipelineSpec.search_space``).

    ============== ======================================= =================
    hyperparameter values                                   config key
    ============== ======================================= =================
    units          32, 64, 128, 256                        ``units``
    activation     tanh, relu                              ``activation``
    embedding_dim  16, 32, 64 (token tasks)                ``embedding_dim``
    learning_rate  log-uniform in [3e-4, 3e-2]             ``learning_rate``
    dropout        0, 0.1, 0.2, 0.3                        ``dropout``
    ============== ======================================= =================
    """
    return {
        "units": hp.Choice("units", [32, 64, 128, 256], default=128),
        "activation": hp.Choice("activation", ["tanh", "relu"], default="tanh"),
        "embedding_dim": hp.Choice("embedding_dim", [16, 32, 64], default=64),
        "learning_rate": hp.Float("learning_rate", 3e-4, 3e-2, sampling="log", default=3e-3),
        "dropout": hp.Choice("dropout", [0.0, 0.1, 0.2, 0.3], default=0.0),
    }


# -- data ------------------------------------------------------------------------------------
def _text_file_mtime(config: ElmanConfig) -> float:
    if config.resolved_dataset != "text":
        return 0.0
    if not config.text_file:
        raise ConfigError(
            "task='char_lm' needs a text file: set config key 'text_file' "
            "(e.g. --set text_file=/path/to/book.txt), or --set dataset=tiny_shakespeare "
            "when TFDS has it"
        )
    try:
        return os.path.getmtime(config.text_file)
    except OSError:
        raise ConfigError(
            f"config key 'text_file' names a file that does not exist: {config.text_file!r}"
        ) from None


def load_splits(config: ElmanConfig):
    """The task's :class:`pipelines.data.DataSplits` (cached per config and file version)."""
    return _load_splits(_data_key(config), _text_file_mtime(config))


def _data_key(config: ElmanConfig) -> tuple:
    return (
        config.task,
        config.resolved_dataset,
        config.text_file,
        config.resolved_seq_length,
        tuple(config.num_sequences),
        config.seed,
        config.data_dir,
    )


@functools.lru_cache(maxsize=4)
def _load_splits(key: tuple, mtime: float):
    from pipelines import data

    task, dataset, text_file, seq_length, num_sequences, seed, data_dir = key
    if task == "char_lm":
        if dataset == "text":
            return data.load("text", path=text_file, seq_length=seq_length)
        return data.load("tiny_shakespeare", data_dir=data_dir, seq_length=seq_length)
    if task == "seq_mnist":
        return data.load("seq_mnist", data_dir=data_dir, source=dataset)
    return data.load(task, seed=seed, seq_length=seq_length, num_sequences=num_sequences)


def vocabulary(config: ElmanConfig) -> tuple[str, ...]:
    """char_lm/word_boundary: the token of every id (``[UNK]`` first for text)."""
    return load_splits(config).info.vocabulary


INPUT_NAMES = {
    "char_lm": "ids",
    "word_boundary": "ids",
    "seq_mnist": "image",
    "temporal_xor": "bits",
    "letter_sequences": "letters",
}


def make_datasets(config: ElmanConfig) -> Datasets:
    """Batched (GLOBAL batch size) ``({input name: x}, target)`` splits of the task."""
    from pipelines.data import make_input_pipeline

    splits = load_splits(config)
    name = INPUT_NAMES[config.task]

    def named(x, y):
        return {name: x}, y

    train = splits.train
    n_train = splits.info.num_examples["train"]
    if config.max_train_examples:
        train = train.take(config.max_train_examples)
        n_train = min(n_train, config.max_train_examples)

    def pipe(ds, training):
        return make_input_pipeline(
            ds,
            global_batch_size=config.batch_size,
            training=training,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            map_fn=named,
        )

    info = splits.info
    return Datasets(
        pipe(train, True),
        pipe(splits.validation, False),
        pipe(splits.test, False),
        info={
            "num_classes": info.num_classes,
            "num_train_examples": n_train,
            "input_shape": tuple(info.feature_shape),
            "vocabulary": info.vocabulary,
        },
    )


# -- model -----------------------------------------------------------------------------------
def _hp(config: ElmanConfig, hp, name: str, default):
    if hp is not None and name in getattr(hp, "values", {}):
        return hp.get(name)
    return default


def build_model(config: ElmanConfig, hp=None):
    """A new Elman network for ``config.task`` (see the module docstring).

    ``hp`` (KerasTuner) may set ``units``, ``embedding_dim`` and ``dropout``.
    """
    import keras

    from layers import ElmanRNN

    task = config.task
    units = int(_hp(config, hp, "units", config.resolved_units))
    dropout = float(_hp(config, hp, "dropout", config.dropout))
    rnn_kwargs = {"activation": config.activation, "dropout": dropout, "seed": config.seed,
                  "name": "elman"}
    if task in TOKEN_TASKS:
        vocab_size = len(vocabulary(config))
        emb = int(_hp(config, hp, "embedding_dim", config.embedding_dim))
        inputs = keras.Input(shape=(None,), dtype="int32", name="ids")
        x = keras.layers.Embedding(vocab_size, emb, name="embedding")(inputs)
        x = ElmanRNN(units, return_sequences=True, **rnn_kwargs)(x)
        outputs = keras.layers.Dense(
            vocab_size, activation="softmax", dtype="float32", name="probabilities"
        )(x)
    elif task == "seq_mnist":
        inputs = keras.Input(shape=(28, 28), dtype="float32", name="image")
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale", dtype="float32")(inputs)
        x = ElmanRNN(units, **rnn_kwargs)(x)
        outputs = keras.layers.Dense(
            10, activation="softmax", dtype="float32", name="probabilities"
        )(x)
    else:
        width = 1 if task == "temporal_xor" else 6
        inputs = keras.Input(shape=(None, width), dtype="float32", name=INPUT_NAMES[task])
        x = ElmanRNN(units, return_sequences=True, **rnn_kwargs)(inputs)
        outputs = keras.layers.Dense(width, activation="sigmoid", dtype="float32", name="next")(x)
    return keras.Model(inputs, outputs, name=f"elman_{task}")


def build_loss(config: ElmanConfig):
    """Cross-entropy per step: sparse categorical (tokens, digits) or binary (bit vectors)."""
    import keras

    if config.task in VECTOR_TASKS:
        return keras.losses.BinaryCrossentropy()
    return keras.losses.SparseCategoricalCrossentropy()


def _bits_per_char(y_true, y_pred):
    import keras

    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred) / LN2


def build_metrics(config: ElmanConfig) -> list:
    """``bits_per_char`` + ``accuracy`` (tokens), ``accuracy`` (seq_mnist), ``bit_accuracy``."""
    import keras

    if config.task in TOKEN_TASKS:
        return [
            keras.metrics.MeanMetricWrapper(_bits_per_char, name="bits_per_char"),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ]
    if config.task == "seq_mnist":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.BinaryAccuracy(name="bit_accuracy")]


# -- export ----------------------------------------------------------------------------------
@functools.cache
def _text_layers():
    """Keras layers (TF ops; they live only in the exported graph) for raw-text inputs."""
    import keras
    import tensorflow as tf

    class CharacterIds(keras.layers.Layer):
        """tf.string ``[batch]`` → (int32 ids ``[batch, max_len]``, int32 lengths ``[batch]``).

        Splits each string into Unicode characters and looks each up in ``vocabulary``
        (``vocabulary[0]`` is the OOV token; unknown characters → 0). Shorter strings are
        right-padded with id 0; ``lengths`` says how many characters each string has.
        """

        def __init__(self, vocabulary, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary = list(vocabulary)
            self.lookup = keras.layers.StringLookup(
                vocabulary=self.vocabulary[1:], num_oov_indices=1, output_mode="int"
            )

        def call(self, text):
            chars = tf.strings.unicode_split(tf.reshape(text, [-1]), "UTF-8")
            lengths = tf.cast(chars.row_lengths(), tf.int32)
            ids = tf.cast(self.lookup(chars.to_tensor(default_value="")), tf.int32)
            return ids, lengths

        def compute_output_shape(self, input_shape):
            return (input_shape[0], None), (input_shape[0],)

        def get_config(self):
            return {**super().get_config(), "vocabulary": self.vocabulary}

    class LastStep(keras.layers.Layer):
        """``[batch, T, V]`` per-step outputs, lengths ``[batch]`` → output at step length−1.

        Right padding cannot affect earlier steps of a causal RNN, so this is the prediction
        after exactly the given characters. An empty string (length 0) is an error.
        """

        def call(self, sequence, lengths):
            tf.debugging.assert_positive(lengths, message="text must hold at least 1 character")
            return tf.gather(sequence, lengths - 1, axis=1, batch_dims=1)

        def compute_output_shape(self, sequence_shape, lengths_shape):
            return (sequence_shape[0], sequence_shape[2])

    return CharacterIds, LastStep


def build_export_model(config: ElmanConfig, model):
    """The model to export: raw text → next-character probabilities (token tasks); else as is."""
    if config.task not in TOKEN_TASKS:
        return model
    import keras

    CharacterIds, LastStep = _text_layers()
    text = keras.Input(shape=(), dtype="string", name="text")
    ids, lengths = CharacterIds(vocabulary(config), name="character_ids")(text)
    per_step = model(ids)
    probabilities = LastStep(name="probabilities")(per_step, lengths)
    return keras.Model(text, probabilities, name=f"{model.name}_text")


def export_kwargs(config: ElmanConfig, datasets: Datasets) -> dict:
    if config.task in TOKEN_TASKS:
        vocab = vocabulary(config)
        warm = "".join(c for c in vocab[1:] if c.isalpha())[:8] or vocab[-1]
        return {
            "task": "classification",
            "class_names": list(vocab),
            "warmup_inputs": {"text": np.array([warm, warm[:1]], dtype=object)},
        }
    if config.task == "seq_mnist":
        warm = np.zeros((1, 28, 28), np.float32)
        warm[0, 7:21, 13:15] = 255.0
        return {
            "task": "classification",
            "class_names": [str(d) for d in range(10)],
            "warmup_inputs": {"image": warm},
        }
    return {"output_names": "next"}


# -- sampling --------------------------------------------------------------------------------
def _numpy_weights(model) -> dict[str, np.ndarray]:
    emb = model.get_layer("embedding").get_weights()[0]
    kernel, recurrent, bias = model.get_layer("elman").get_weights()[:3]
    w_out, b_out = model.get_layer("probabilities").get_weights()
    return {
        "emb": emb,
        "kernel": kernel,
        "recurrent": recurrent,
        "bias": bias,
        "w_out": w_out,
        "b_out": b_out,
    }


def _step(w: dict, token: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h_t = tanh(e_t W_x + h_{t-1} W_h + b); p_t = softmax(h_t W_y + b_y) (log-probs)."""
    h = np.tanh(w["emb"][token] @ w["kernel"] + h @ w["recurrent"] + w["bias"])
    logits = h @ w["w_out"] + w["b_out"]
    logits = logits - logits.max()
    return h, logits - np.log(np.exp(logits).sum())


def next_char_probabilities(model, vocabulary, text: str) -> np.ndarray:
    """p(next character | text) ``[vocab]`` computed step by step in NumPy from the weights."""
    from pipelines.data import encode

    if not text:
        raise ValueError("text must hold at least 1 character, received text=''")
    w = _numpy_weights(model)
    h = np.zeros(w["recurrent"].shape[0], np.float64)
    for token in encode(text, vocabulary):
        h, logp = _step(w, int(token), h)
    return np.exp(logp)


def sample_text(
    model, vocabulary, *, prompt: str, length: int, temperature: float = 1.0, seed: int = 0
) -> str:
    """Sample ``length`` characters after ``prompt`` from a trained char model.

    Each step draws from ``p_T(c) ∝ p(c)^(1/T)`` (temperature ``T``; T → 0 is greedy, T = 1 the
    model's distribution); the OOV token is never drawn. Returns only the new characters.
    """
    from pipelines.data import encode

    if not prompt:
        raise ValueError("prompt must hold at least 1 character, received prompt=''")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, received length={length!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, received temperature={temperature!r}")
    rng = np.random.default_rng(seed)
    w = _numpy_weights(model)
    h = np.zeros(w["recurrent"].shape[0], np.float64)
    for token in encode(prompt, vocabulary):
        h, logp = _step(w, int(token), h)
    out = []
    for _ in range(length):
        scaled = logp / temperature
        scaled[0] = -np.inf  # never emit [UNK]
        p = np.exp(scaled - scaled.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        out.append(vocabulary[token])
        h, logp = _step(w, token, h)
    return "".join(out)


def default_prompt(config: ElmanConfig) -> str:
    if config.sample_prompt:
        return config.sample_prompt
    from pipelines import data

    splits = load_splits(config)
    first = next(iter(splits.validation.take(1)))[0].numpy()
    text = data.decode(first, splits.info.vocabulary).replace("[UNK]", " ")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return lines[0][:40] if lines else text[:20]


# -- evaluation after training -----------------------------------------------------------------
def _per_step_bits(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """−log2 p(target) per step over an unbatched next-token split → ``([N, T], ids [N, T])``."""
    xs, ys = zip(*dataset.as_numpy_iterator(), strict=True)
    x, y = np.stack(xs), np.stack(ys)
    probs = model.predict(x, batch_size=256, verbose=0)
    p = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    return -np.log2(np.maximum(p, 1e-12)), y


def evaluate_word_boundary(
    config: ElmanConfig, model, plots_dir=None, *, warmup_steps: int = 4
) -> dict[str, float]:
    """Per-letter error on the test stream; mean error at word onsets vs inside words.

    Error = −log2 p(next letter). The first ``warmup_steps`` steps of each window (little
    context) are left out of the averages. Writes ``word_boundary_error.png`` to ``plots_dir``.
    """
    splits = load_splits(config)
    bits, targets = _per_step_bits(model, splits.test)
    onset = splits.info.extras["target_onset"]["test"].astype(bool)
    keep = np.zeros_like(onset)
    keep[:, warmup_steps:] = True
    result = {
        "onset_error_bits": float(bits[keep & onset].mean()),
        "mid_word_error_bits": float(bits[keep & ~onset].mean()),
    }
    if plots_dir is not None:
        _plot_word_boundary(
            bits,
            targets,
            onset,
            splits.info.vocabulary,
            pathlib.Path(plots_dir) / "word_boundary_error.png",
            warmup_steps,
        )
    return result


def _plot_word_boundary(bits, targets, onset, vocab, path, warmup_steps, steps: int = 60):
    from pipelines.plots import pyplot, save_figure

    plt = pyplot()
    cols = bits.shape[1] - warmup_steps
    rows = max(1, min(len(bits), -(-steps // cols)))
    err = bits[:rows, warmup_steps:].ravel()[:steps]
    letters = [vocab[i] for i in targets[:rows, warmup_steps:].ravel()[:steps]]
    starts = onset[:rows, warmup_steps:].ravel()[:steps]
    fig, ax = plt.subplots(figsize=(max(8, len(err) * 0.22), 3.2))
    ax.plot(np.arange(len(err)), err, marker="o", markersize=3, linewidth=1)
    for i in np.flatnonzero(starts):
        ax.axvline(i, color="tab:red", alpha=0.25, linewidth=1)
    ax.set_xticks(np.arange(len(err)))
    ax.set_xticklabels(letters, fontsize=7)
    ax.set_xlabel("predicted (next) letter; red lines: word onsets")
    ax.set_ylabel("error, −log2 p (bits)")
    ax.set_title("Elman word-boundary task: prediction error peaks at word onsets")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def evaluate_vector_task(config: ElmanConfig, model, plots_dir=None) -> dict[str, float]:
    """Temporal XOR / letters: mean squared error per step, predictable vs not; plot by phase."""
    splits = load_splits(config)
    xs, ys = zip(*splits.test.as_numpy_iterator(), strict=True)
    x, y = np.stack(xs), np.stack(ys)
    err = ((model.predict(x, batch_size=256, verbose=0) - y) ** 2).mean(axis=-1)  # [N, T]
    if config.task == "temporal_xor":
        predictable = np.broadcast_to(splits.info.extras["predictable"], err.shape)
        labels = ["1st bit", "2nd bit", "XOR bit"]
        phase = (np.arange(err.shape[1]) + 1) % 3  # the target's position in its triplet
        by_phase = [float(err[:, phase == k].mean()) for k in range(3)]
    else:
        letters = splits.info.extras["letters"]["test"][:, 1:]  # target letters
        predictable = np.isin(letters, list("aiu"))  # vowels follow from their consonant
        labels = ["consonant", "vowel"]
        by_phase = [float(err[~predictable].mean()), float(err[predictable].mean())]
    result = {
        "predictable_error": float(err[predictable].mean()),
        "unpredictable_error": float(err[~predictable].mean()),
    }
    if plots_dir is not None:
        from pipelines.plots import pyplot, save_figure

        fig, ax = pyplot().subplots(figsize=(5, 3))
        ax.bar(labels, by_phase)
        ax.set_ylabel("mean squared error")
        ax.set_title(f"Elman {config.task}: error by target type")
        fig.tight_layout()
        save_figure(fig, pathlib.Path(plots_dir) / f"{config.task}_error.png", dpi=100)
    return result


def after_training(config: ElmanConfig, model, run_dir) -> dict[str, float | str]:
    """Task extras written next to the core trainer's outputs; returns extra metrics."""
    from pipelines.rundir import write_text_atomic

    run_dir = pathlib.Path(run_dir)
    plots = run_dir / "plots"
    if config.task == "char_lm":
        vocab = vocabulary(config)
        prompt = default_prompt(config)
        text = sample_text(
            model,
            vocab,
            prompt=prompt,
            length=config.sample_length,
            temperature=config.temperature,
            seed=config.seed,
        )
        write_text_atomic(run_dir / "samples.txt", prompt + text + "\n")
        return {"sample_temperature": config.temperature, "sample_prompt": prompt}
    if config.task == "word_boundary":
        return evaluate_word_boundary(config, model, plots)
    if config.task in VECTOR_TASKS:
        return evaluate_vector_task(config, model, plots)
    return {}


def train(config: ElmanConfig, workdir: str | os.PathLike = ".", **kwargs):
    """:func:`pipelines.trainer.train` with this pipeline's spec; its ``evaluate`` hook
    (:func:`after_training`) writes samples.txt/plots and the extra metrics."""
    from pipelines.trainer import train as core_train

    return core_train(config, workdir, spec=SPEC, **kwargs)


SPEC = PipelineSpec(
    name="elman",
    config_class=ElmanConfig,
    build_model=build_model,
    make_datasets=make_datasets,
    build_loss=build_loss,
    build_metrics=build_metrics,
    export_model=build_export_model,
    export_kwargs=export_kwargs,
    search_space=search_space,
    evaluate=after_training,
    monitor="val_loss",
    monitor_mode="min",
    description="Elman RNN sequence models: char_lm, word_boundary, seq_mnist, temporal_xor, "
    "letter_sequences",
)
