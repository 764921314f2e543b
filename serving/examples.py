"""``tf.Example`` layout of the exported ``classify`` / ``regress`` signatures.

TensorFlow Serving's Classify and Regress methods hand the model a batch of serialized
``tf.train.Example`` protos (a ``tf.string`` tensor of shape ``[batch]`` under the signature input
key ``inputs``). deepline's exported models read them with this fixed layout:

- one feature per model input, keyed by the input's name (the ``keras.Input(name=...)`` the
  ``serving_default`` signature also uses);
- the value is the input's per-example tensor (shape = input shape without the batch dimension,
  which must be fully known) flattened in row-major (C) order;
- the list type follows the input dtype: floating inputs → ``float_list``, integer and boolean
  inputs → ``int64_list``, string inputs → ``bytes_list``.

Example: a model with ``keras.Input(shape=(28, 28, 1), name="image")`` expects one feature
``"image"`` with a ``float_list`` of 784 raw pixel values (0–255). A text model with
``keras.Input(shape=(), dtype="string", name="text")`` expects ``"text"`` with one ``bytes_list``
value.

The same functions build the protos clients send (``make_example``) and parse them inside the
exported graph (``parse_examples``), so both sides agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

__all__ = [
    "example_kind",
    "feature_spec",
    "parse_examples",
    "make_example",
    "make_examples",
]


def example_kind(dtype) -> str:
    """The ``tf.train.Feature`` list for ``dtype``: "float_list", "int64_list" or "bytes_list"."""
    dtype = tf.as_dtype(dtype)
    if dtype.is_floating:
        return "float_list"
    if dtype.is_integer or dtype == tf.bool:
        return "int64_list"
    if dtype == tf.string:
        return "bytes_list"
    raise ValueError(
        f"Inputs of dtype {dtype.name} cannot be carried in a tf.Example; "
        "expected a floating, integer, boolean or string dtype."
    )


_PARSE_DTYPE = {"float_list": tf.float32, "int64_list": tf.int64, "bytes_list": tf.string}


def feature_spec(input_specs: Mapping[str, tf.TensorSpec]) -> dict[str, tf.io.FixedLenFeature]:
    """``tf.io.parse_example`` spec for model inputs ``{name: TensorSpec([batch, *shape])}``.

    Each feature is ``FixedLenFeature(shape, float32 | int64 | string)`` with ``shape`` the input
    shape without its batch dimension. Raises ValueError if that shape is not fully known.
    """
    spec = {}
    for name, tensor_spec in input_specs.items():
        shape = tensor_spec.shape[1:]
        if not shape.is_fully_defined():
            raise ValueError(
                f"Input {name!r} has shape {tensor_spec.shape}: classify/regress signatures parse "
                "tf.Example features of a fixed size, so every non-batch dimension must be known."
            )
        spec[name] = tf.io.FixedLenFeature(
            shape.as_list(), _PARSE_DTYPE[example_kind(tensor_spec.dtype)]
        )
    return spec


def parse_examples(serialized: tf.Tensor, input_specs: Mapping[str, tf.TensorSpec]) -> dict:
    """Parse a ``[batch]`` string tensor of serialized Examples into model inputs.

    Returns ``{name: Tensor([batch, *shape], input dtype)}``; a missing feature or a value list of
    the wrong length fails the request with TensorFlow's InvalidArgumentError naming the feature.
    """
    parsed = tf.io.parse_example(serialized, feature_spec(input_specs))
    return {name: tf.cast(parsed[name], spec.dtype) for name, spec in input_specs.items()}


def make_example(features: Mapping[str, object]) -> tf.train.Example:
    """One ``tf.train.Example`` from ``{name: value}`` (the value of ONE example: scalar/array).

    Float values go to ``float_list``, integers and booleans to ``int64_list``, ``bytes``/``str``
    to ``bytes_list`` (str is UTF-8 encoded). Arrays are flattened in row-major order.
    """
    example = tf.train.Example()
    for name, value in features.items():
        array = np.asarray(value)
        feature = example.features.feature[name]
        if array.dtype.kind == "f":
            feature.float_list.value.extend(array.astype(np.float32).ravel().tolist())
        elif array.dtype.kind in "iub":
            feature.int64_list.value.extend(array.astype(np.int64).ravel().tolist())
        elif array.dtype.kind in "SUO":
            feature.bytes_list.value.extend(
                v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel()
            )
        else:
            raise ValueError(
                f"Feature {name!r} has dtype {array.dtype}; expected float, int, bool or bytes/str."
            )
    return example


def make_examples(batch: Mapping[str, object]) -> list[tf.train.Example]:
    """Split a batch ``{name: array [batch, ...]}`` into one ``tf.train.Example`` per row."""
    arrays = {name: np.asarray(value) for name, value in batch.items()}
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if not arrays or None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            f"batch must map every input name to an array with the same leading (batch) "
            f"dimension; received sizes {sizes}."
        )
    n = next(iter(sizes.values()))
    return [make_example({name: a[i] for name, a in arrays.items()}) for i in range(n)]
