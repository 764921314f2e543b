"""Classify, Regress and MultiInference on ``tf.Example`` inputs (TF Serving semantics).

An ``Input`` proto (``example_list`` or ``example_list_with_context``) becomes a 1-D string tensor
of serialized examples; with a context, each example is the context's serialization followed by
the example's (protobuf merge semantics: the example's features win), exactly as TF Serving's
``InputToSerializedExampleTensor`` does. The tensor is fed to the signature's single string input.

- Classify: signature ``method_name`` must be ``tensorflow/serving/classify``; outputs ``classes``
  (string ``[batch, k]``) and/or ``scores`` (float ``[batch, k]``) become
  ``ClassificationResult.classifications[i].classes[j] = (label, score)``.
- Regress: ``method_name`` ``tensorflow/serving/regress``; output ``outputs`` of shape ``[batch]``
  or ``[batch, 1]`` becomes ``RegressionResult.regressions[i].value``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from serving.server.errors import Code, ServingError, invalid_argument
from serving.server.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Servable,
    Signature,
)

Runner = Callable[[Servable, Signature, dict], dict]


def serialized_examples(input_proto) -> np.ndarray:
    """``tensorflow.serving.Input`` → 1-D object array of serialized ``tf.Example`` bytes."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        out = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = input_proto.example_list_with_context.context.SerializeToString()
        out = [ctx + e.SerializeToString()
               for e in input_proto.example_list_with_context.examples]
    else:
        out = []
    if not out:
        raise invalid_argument("Input is empty.")
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def _single_string_input(sig: Signature) -> str:
    if len(sig.inputs) != 1:
        raise invalid_argument(f"Expected one input Tensor. Signature '{sig.name}' has "
                               f"{len(sig.inputs)}: {{{','.join(sig.inputs)}}}")
    alias = next(iter(sig.inputs))
    if sig.inputs[alias].dtype_name != "string":
        got = sig.inputs[alias].dtype_name
        raise invalid_argument(f"Expected input Tensor '{alias}' of signature '{sig.name}' to be "
                               f"string (serialized tf.Example), got {got}")
    return alias


def _named_signature(servable: Servable, name: str) -> Signature:
    """The signature ``name`` (empty: ``serving_default``) for Classify and Regress: an unknown
    one is INVALID_ARGUMENT there, not Predict's FAILED_PRECONDITION."""
    key = name or DEFAULT_SIGNATURE
    sig = servable.signatures.get(key)
    if sig is None:
        raise invalid_argument(f"No signature was found with the name: {key}")
    return sig


def classification_signature(servable: Servable, name: str) -> Signature:
    sig = _named_signature(servable, name)
    if sig.method_name != CLASSIFY_METHOD:
        raise invalid_argument(f"Expected classification signature method_name to be "
                               f"{CLASSIFY_METHOD}. Was: {sig.method_name}")
    if "classes" not in sig.outputs and "scores" not in sig.outputs:
        raise invalid_argument("Expected classification signature outputs to contain at least "
                               "one of classes or scores.")
    return sig


def regression_signature(servable: Servable, name: str) -> Signature:
    sig = _named_signature(servable, name)
    if sig.method_name != REGRESS_METHOD:
        raise invalid_argument(f"Expected regression signature method_name to be "
                               f"{REGRESS_METHOD}. Was: {sig.method_name}")
    if "outputs" not in sig.outputs:
        raise invalid_argument("No output Tensor 'outputs' in the regression signature "
                               f"'{sig.name}' (has {{{','.join(sig.outputs)}}}).")
    return sig


def classify(servable: Servable, sig: Signature, input_proto, run: Runner, result=None):
    """Run a classify signature; fills and returns a ``ClassificationResult``."""
    examples = serialized_examples(input_proto)
    n = len(examples)
    outputs = run(servable, sig, {_single_string_input(sig): examples})
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    for name, value in (("classes", classes), ("scores", scores)):
        if value is None:
            continue
        if value.ndim != 2 or value.shape[0] != n:
            raise invalid_argument(f"Expected Tensor shape: [{n} num_classes] but got "
                                   f"{list(value.shape)} for output '{name}'")
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise invalid_argument(f"Tensors class and score should match in shape: "
                               f"{list(classes.shape)} vs {list(scores.shape)}")
    result = result if result is not None else classification_pb2.ClassificationResult()
    k = (classes if classes is not None else scores).shape[1]
    for i in range(n):
        c = result.classifications.add()
        for j in range(k):
            cls = c.classes.add()
            if classes is not None:
                label = classes[i, j]
                cls.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(
                    label)
            if scores is not None:
                cls.score = float(scores[i, j])
    return result


def regress(servable: Servable, sig: Signature, input_proto, run: Runner, result=None):
    """Run a regress signature; fills and returns a ``RegressionResult``."""
    examples = serialized_examples(input_proto)
    n = len(examples)
    values = run(servable, sig, {_single_string_input(sig): examples})["outputs"]
    if not (values.shape == (n,) or values.shape == (n, 1)):
        raise invalid_argument(f"Expected output Tensor shape to be either [batch_size] or "
                               f"[batch_size, 1] but got {list(values.shape)}")
    result = result if result is not None else regression_pb2.RegressionResult()
    for v in values.reshape(n):
        result.regressions.add().value = float(v)
    return result


def multi_inference(servable: Servable, request, run: Runner, response=None):
    """``MultiInferenceRequest`` on one servable → ``MultiInferenceResponse``."""
    model_name = request.tasks[0].model_spec.name if request.tasks else ""
    seen = set()
    for task in request.tasks:  # TF Serving's checks, in its order
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if task.model_spec.name != model_name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the "
                                   "same model name.")
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if key in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        if key not in servable.signatures:
            raise invalid_argument(f"Requested signature not found in model graph: {key}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(Code.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {task.method_name}")
    response = response if response is not None else inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        res = response.results.add()
        res.model_spec.name = servable.name
        res.model_spec.version.value = servable.version
        res.model_spec.signature_name = task.model_spec.signature_name or "serving_default"
        if task.method_name == CLASSIFY_METHOD:
            sig = classification_signature(servable, task.model_spec.signature_name)
            classify(servable, sig, request.input, run, res.classification_result)
        else:
            sig = regression_signature(servable, task.model_spec.signature_name)
            regress(servable, sig, request.input, run, res.regression_result)
    return response
