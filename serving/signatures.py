"""Serving signatures of an exported Keras model: named inputs, named outputs, classify, regress.

TensorFlow Serving dispatches on a SignatureDef's ``method_name``:

- ``serving_default`` (``tensorflow/serving/predict``): inputs keyed by the model's
  ``keras.Input`` names, outputs keyed by name (``probabilities`` and ``classes`` for classifiers).
- ``classify`` (``tensorflow/serving/classify``): input ``inputs`` = serialized ``tf.Example``
  ``[batch]`` (layout: ``serving.examples``); outputs ``classes`` (string labels
  ``[batch, num_classes]``) and ``scores`` (float32 ``[batch, num_classes]``).
- ``regress`` (``tensorflow/serving/regress``): input ``inputs`` = serialized ``tf.Example``
  ``[batch]``; output ``outputs`` (float32 ``[batch]``).

TF2's ``tf.saved_model.save`` writes every signature as ``tensorflow/serving/predict``;
``set_method_names`` rewrites the MetaGraphDef so the real model server accepts ``:classify``
and ``:regress`` requests.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import tensorflow as tf

from serving.examples import feature_spec, parse_examples

__all__ = [
    "PREDICT_METHOD",
    "CLASSIFY_METHOD",
    "REGRESS_METHOD",
    "DEFAULT_SIGNATURE",
    "CLASSIFY_SIGNATURE",
    "REGRESS_SIGNATURE",
    "EXAMPLES_INPUT_KEY",
    "ModelIO",
    "describe_model",
    "build_signatures",
    "set_method_names",
]

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"
EXAMPLES_INPUT_KEY = "inputs"

TASKS = (None, "classification", "regression")
_INPUT_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ModelIO:
    """How to feed a Keras model and how to name what it returns.

    input_specs: ``{name: tf.TensorSpec(shape=[None, ...], dtype, name=name)}`` in model order.
    input_structure: "single", "list" or "dict" (how ``model(...)`` wants its inputs).
    output_keys: the names of the model's own outputs, in model order.
    output_structure: "single", "list" or "dict".
    """

    input_specs: dict
    input_structure: str
    output_keys: tuple
    output_structure: str
    output_shapes: tuple

    def call(self, model, tensors: dict):
        """Run ``model`` in inference mode on ``{input name: tensor}``; return ``{key: tensor}``."""
        names = list(self.input_specs)
        if self.input_structure == "single":
            inputs = tensors[names[0]]
        elif self.input_structure == "list":
            inputs = [tensors[n] for n in names]
        else:
            inputs = dict(tensors)
        outputs = model(inputs, training=False)
        if self.output_structure == "single":
            flat = [outputs]
        elif self.output_structure == "list":
            flat = list(outputs)
        else:
            return {k: outputs[k] for k in self.output_keys}
        return dict(zip(self.output_keys, flat, strict=True))


def _spec(name, keras_tensor):
    shape = [None, *list(keras_tensor.shape)[1:]] if keras_tensor.shape else []
    return tf.TensorSpec(shape, tf.as_dtype(keras_tensor.dtype), name=name)


def describe_model(model, output_names=None, task=None) -> ModelIO:
    """Inspect ``model``'s inputs/outputs and decide the serving names.

    Input names: the ``keras.Input(name=...)`` names (dict keys for dict-input models).
    Output names: dict outputs keep their keys; else ``output_names`` (str or list); else
    ``probabilities`` (task="classification"), ``outputs`` (a single output), or the Keras
    output layer names (several outputs).
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} has no symbolic inputs: build it with "
            "named `keras.Input(name=...)` inputs (functional or Sequential) before exporting."
        )
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        input_structure = "dict"
        named = list(struct.items())
    else:
        input_structure = "single" if len(inputs) == 1 else "list"
        named = [(t.name, t) for t in inputs]
    input_specs = {}
    for name, tensor in named:
        if not isinstance(name, str) or not _INPUT_NAME.match(name) or name in input_specs:
            raise ValueError(
                "model inputs need unique names of letters, digits, '_', '.', '-' (signature "
                f"keys), set with keras.Input(name=...); received input name {name!r}."
            )
        input_specs[name] = _spec(name, tensor)

    out_struct = getattr(model, "_outputs_struct", None)
    outputs = list(model.outputs)
    if isinstance(out_struct, dict):
        if output_names is not None:
            raise ValueError(
                f"output_names={output_names!r} cannot rename a model with dict outputs; "
                f"its keys {sorted(out_struct)} name the outputs."
            )
        output_structure = "dict"
        keys = tuple(out_struct)
        shapes = tuple(tuple(out_struct[k].shape) for k in keys)
    else:
        output_structure = "single" if len(outputs) == 1 and not isinstance(
            out_struct, (list, tuple)
        ) else "list"
        shapes = tuple(tuple(t.shape) for t in outputs)
        if output_names is not None:
            names = [output_names] if isinstance(output_names, str) else list(output_names)
            if len(names) != len(outputs) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"output_names must be a non-empty string or a list of {len(outputs)} "
                    f"non-empty strings (one per model output); received {output_names!r}."
                )
            keys = tuple(names)
        elif task == "classification" and len(outputs) == 1:
            keys = ("probabilities",)
        elif len(outputs) == 1:
            keys = ("outputs",)
        else:
            keys = tuple(getattr(model, "output_names", None) or [t.name for t in outputs])
    if len(set(keys)) != len(keys):
        raise ValueError(f"output names must be unique; received {list(keys)}.")
    return ModelIO(input_specs, input_structure, keys, output_structure, shapes)


def _single_output(io: ModelIO, task: str):
    if len(io.output_keys) != 1:
        raise ValueError(
            f"task={task!r} needs a model with exactly one output; this model has "
            f"{len(io.output_keys)} ({list(io.output_keys)})."
        )
    return io.output_keys[0], io.output_shapes[0]


def num_classes_of(io: ModelIO) -> int:
    """Number of classes of a classifier's output ``[batch, n]`` (n=1: a sigmoid → 2 classes)."""
    key, shape = _single_output(io, "classification")
    if len(shape) != 2 or shape[1] is None:
        raise ValueError(
            f"task='classification' needs an output of shape (batch, num_classes) with a known "
            f"num_classes; output {key!r} has shape {shape}."
        )
    return 2 if shape[1] == 1 else int(shape[1])


def _scores(probabilities):
    """Class scores ``[batch, n]``; a single sigmoid column p becomes ``[1 - p, p]``."""
    p = tf.cast(probabilities, tf.float32)
    if p.shape[-1] == 1:
        return tf.concat([1.0 - p, p], axis=-1)
    return p


def build_signatures(model, io: ModelIO, task=None, class_names=None):
    """Return ``{signature key: (python fn, input_signature list)}`` for ``ExportArchive``.

    serving_default returns ``{output name: tensor}``; classifiers add ``classes`` (int64
    ``[batch]``, the argmax index; for one sigmoid column, ``p > 0.5``).
    """
    names = list(io.input_specs)
    specs = [io.input_specs[n] for n in names]

    def serving_default(*tensors):
        outputs = io.call(model, dict(zip(names, tensors, strict=True)))
        if task == "classification":
            key = io.output_keys[0]
            probabilities = tf.cast(outputs[key], tf.float32)  # float16 under mixed precision
            outputs = {key: probabilities, "classes": tf.argmax(_scores(probabilities), axis=-1)}
        return outputs

    signatures = {DEFAULT_SIGNATURE: (serving_default, specs)}
    examples_spec = [tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT_KEY)]

    if task == "classification":
        n = num_classes_of(io)
        labels = [str(i) for i in range(n)] if class_names is None else list(class_names)
        if len(labels) != n:
            raise ValueError(
                f"class_names has {len(labels)} entries but the model outputs {n} classes; "
                f"received class_names={class_names!r}."
            )
        feature_spec(io.input_specs)  # fail at export time if not expressible as tf.Example

        def classify(inputs):
            probabilities = io.call(model, parse_examples(inputs, io.input_specs))
            scores = _scores(probabilities[io.output_keys[0]])
            batch = tf.shape(scores)[0]
            classes = tf.tile(tf.constant([labels], dtype=tf.string), tf.stack([batch, 1]))
            return {"classes": classes, "scores": scores}

        signatures[CLASSIFY_SIGNATURE] = (classify, examples_spec)

    if task == "regression":
        key, shape = _single_output(io, "regression")
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise ValueError(
                f"task='regression' needs an output of shape (batch,) or (batch, 1) (TF Serving's "
                f"Regress returns one value per example); output {key!r} has shape {shape}."
            )
        feature_spec(io.input_specs)

        def regress(inputs):
            values = io.call(model, parse_examples(inputs, io.input_specs))[key]
            return {"outputs": tf.reshape(tf.cast(values, tf.float32), [-1])}

        signatures[REGRESS_SIGNATURE] = (regress, examples_spec)
    return signatures


def set_method_names(export_dir, method_names: dict) -> None:
    """Rewrite ``signature_def[key].method_name`` in ``<export_dir>/saved_model.pb``, atomically.

    TF2 writes every signature as ``tensorflow/serving/predict``; TF Serving's Classify/Regress
    refuse such signatures. The new proto is written next to the old one, then ``os.replace``d.
    The fingerprint (``fingerprint.pb``, a checksum of saved_model.pb) is regenerated.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for key, method in method_names.items():
            if key not in meta_graph.signature_def:
                raise KeyError(f"signature {key!r} not found in {path}")
            meta_graph.signature_def[key].method_name = method
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(saved_model.SerializeToString(deterministic=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _refresh_fingerprint(export_dir)


def _refresh_fingerprint(export_dir) -> None:
    fingerprint = os.path.join(export_dir, "fingerprint.pb")
    if not os.path.exists(fingerprint):
        return
    try:
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        data = fingerprinting.CreateFingerprintDef(os.fspath(export_dir))
    except Exception:  # private API moved: a stale fingerprint is worse than none (it's optional)
        os.remove(fingerprint)
        return
    tmp = fingerprint + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, fingerprint)
