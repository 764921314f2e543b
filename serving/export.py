"""Export a trained Keras model as a TensorFlow Serving SavedModel version.

Layout written (the one ``tensorflow_model_server --model_base_path=<base_path>/<model_name>``
polls)::

    <base_path>/<model_name>/<version>/
        saved_model.pb          signatures: serving_default [+ classify | regress]
        variables/
        assets.extra/tf_serving_warmup_requests

The whole version directory is written under a hidden temporary name inside
``<base_path>/<model_name>/`` and then ``os.rename``d into place, so a server polling the
directory never sees a partial version, and a failed export leaves nothing behind.
The SavedModel reloads with plain ``tf.saved_model.load`` (no deepline code needed): custom
layers are traced into the graph.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import uuid

__all__ = ["export_model", "next_version", "list_versions"]

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def list_versions(model_dir) -> list[int]:
    """Integer version directories under ``model_dir`` (sorted; [] if it does not exist)."""
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
    )


def next_version(model_dir) -> int:
    """max(existing integer versions) + 1, or 1 when there are none."""
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _validate(model_name, version, task, class_names):
    from serving.signatures import TASKS

    if not isinstance(model_name, str) or not _MODEL_NAME.match(model_name) or ".." in model_name:
        raise ValueError(
            "model_name must be a non-empty name of letters, digits, '.', '_' or '-' (no path "
            f"separators, not starting with '.' or '-'); received model_name={model_name!r}."
        )
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise ValueError(
            f"version must be a non-negative integer or None; received version={version!r}."
        )
    if task not in TASKS:
        raise ValueError(
            f"task must be one of {TASKS}; received task={task!r}."
        )
    if class_names is not None:
        if task != "classification":
            raise ValueError(
                f"class_names is only used with task='classification'; received task={task!r}."
            )
        if isinstance(class_names, (str, bytes)) or not all(
            isinstance(c, str) for c in class_names
        ):
            raise ValueError(
                f"class_names must be a list of strings; received class_names={class_names!r}."
            )


def export_model(
    model,
    base_path,
    model_name: str,
    *,
    version: int | None = None,
    output_names=None,
    task: str | None = None,
    class_names=None,
    warmup_inputs=None,
) -> pathlib.Path:
    """Export ``model`` to ``<base_path>/<model_name>/<version>/`` for TensorFlow Serving.

    Args:
        model: a Keras model built on named ``keras.Input(name=...)`` inputs (functional or
            Sequential). It must take RAW values (pixels 0–255, text as strings): the
            preprocessing it was trained with belongs inside it.
        base_path: directory holding one sub-directory per model name (created if missing).
        model_name: the name clients use (``/v1/models/<model_name>``).
        version: integer version; None → max existing version + 1 (or 1).
        output_names: name(s) for list/single outputs (dict outputs keep their keys). Default:
            ``probabilities`` for classifiers, ``outputs`` for a single output, the Keras output
            layer names for several outputs.
        task: None, "classification" (the single output is class probabilities ``[batch, n]``,
            or one sigmoid column; adds ``classes`` to serving_default and a ``classify``
            signature) or "regression" (single output ``[batch]``/``[batch, 1]``; adds a
            ``regress`` signature).
        class_names: labels returned by ``classify`` (default: "0" … "n-1").
        warmup_inputs: batches replayed by the server at load time (see
            ``serving.warmup.warmup_batches``); default one batch of zeros.

    Signatures (see ``serving.signatures``):
        serving_default: inputs ``{input name}`` → ``{output names}`` (+ ``classes``: int64
            argmax ``[batch]`` for classifiers).
        classify: ``inputs`` (serialized tf.Example ``[batch]``) → ``classes`` (string
            ``[batch, n]``), ``scores`` (float32 ``[batch, n]``);
            method tensorflow/serving/classify.
        regress: ``inputs`` → ``outputs`` (float32 ``[batch]``); method tensorflow/serving/regress.

    Returns:
        The version directory.

    Raises:
        ValueError: a bad argument (named in the message).
        FileExistsError: the version directory already exists (it is left untouched).
    """
    _validate(model_name, version, task, class_names)

    import keras

    from serving import signatures as sig
    from serving.warmup import warmup_batches, write_warmup

    io = sig.describe_model(model, output_names=output_names, task=task)
    if task == "classification" and "classes" in io.output_keys:
        raise ValueError(
            "output_names must not use 'classes' for a classifier: serving_default adds its own "
            f"'classes' output; received output_names={output_names!r}."
        )
    signature_fns = sig.build_signatures(model, io, task=task, class_names=class_names)
    batches = warmup_batches(io.input_specs, warmup_inputs)

    model_dir = pathlib.Path(base_path) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = next_version(model_dir)
    final_dir = model_dir / str(version)
    if final_dir.exists():
        raise FileExistsError(
            f"Model version directory {final_dir} already exists; versions are never overwritten "
            "(pass another version, or version=None for the next one)."
        )

    tmp_dir = model_dir / f".tmp-export-{version}-{uuid.uuid4().hex[:12]}"
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, (fn, input_signature) in signature_fns.items():
            archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
        archive.write_out(str(tmp_dir), verbose=False)

        methods = {sig.CLASSIFY_SIGNATURE: sig.CLASSIFY_METHOD,
                   sig.REGRESS_SIGNATURE: sig.REGRESS_METHOD}
        methods = {k: v for k, v in methods.items() if k in signature_fns}
        if methods:
            sig.set_method_names(tmp_dir, methods)
        write_warmup(tmp_dir, model_name, batches)
        _verify(tmp_dir, list(signature_fns), batches[0])
        _publish(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return final_dir


def _verify(export_dir, signature_keys, batch) -> None:
    """Reload with plain ``tf.saved_model.load`` and run serving_default on a warm-up batch."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    missing = set(signature_keys) - set(loaded.signatures)
    if missing:
        raise RuntimeError(f"exported SavedModel at {export_dir} lacks signatures {missing}")
    loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in batch.items()})


def _publish(tmp_dir: pathlib.Path, final_dir: pathlib.Path) -> None:
    """Atomically move the finished export into place, never replacing an existing version."""
    if final_dir.exists():
        raise FileExistsError(f"Model version directory {final_dir} already exists.")
    try:
        os.rename(tmp_dir, final_dir)
    except OSError as e:  # raced by another exporter that created the version meanwhile
        if final_dir.exists():
            raise FileExistsError(f"Model version directory {final_dir} already exists.") from e
        raise
