"""Turn ``deepline-query`` inputs (image files, .npy/.npz, JSON) into named NumPy batches.

Every loader returns ``{input name: np.ndarray [batch, ...]}`` with the dtype the model's
signature declares (``SignatureInfo.inputs``: name → (dtype, shape with None for unknown)).

- Images (PNG, JPEG, anything Pillow opens) become RAW pixels 0–255 — the exported models
  rescale inside — converted to grayscale (1 channel or no channel axis), RGB (3) or RGBA (4) and
  resized (bilinear) to the height/width the signature declares; several files form one batch.
- ``.npy``: one array for the input (a missing batch axis is added); ``.npz``: arrays keyed by
  input name.
- JSON: a TF Serving REST body (``{"instances": [...]}`` rows or ``{"inputs": ...}`` columns),
  a bare list of instances, or ``{input name: batch}``; ``{"b64": "..."}`` marks bytes.
"""

from __future__ import annotations

import base64
import json
import pathlib

import numpy as np

__all__ = ["InputError", "load_images", "load_numpy", "load_json", "cast_batch"]


class InputError(ValueError):
    """The user's input cannot be turned into a request; ``str(e)`` says why."""


def _single_input(signature, input_name):
    if input_name is not None:
        if input_name not in signature.inputs:
            raise InputError(
                f"--input_name {input_name!r} is not an input of the signature; its inputs are "
                f"{sorted(signature.inputs)}"
            )
        return input_name
    if len(signature.inputs) != 1:
        raise InputError(
            f"the signature has several inputs {sorted(signature.inputs)}: pass --input_name, or "
            "give all of them in a .npz file or JSON object"
        )
    return next(iter(signature.inputs))


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_images(paths, signature, input_name=None) -> dict:
    """Images → ``{name: [batch, H, W(, C)]}`` raw 0–255 in the input's dtype."""
    from PIL import Image, UnidentifiedImageError

    name = _single_input(signature, input_name)
    dtype, shape = signature.inputs[name]
    if shape is None or len(shape) not in (3, 4):
        raise InputError(
            f"input {name!r} has shape {shape}; an image input needs [batch, height, width] or "
            "[batch, height, width, channels]"
        )
    channels = shape[3] if len(shape) == 4 else 1
    if channels not in _MODES:
        raise InputError(f"input {name!r} wants {channels} channels; images give 1, 3 or 4")
    height, width = shape[1], shape[2]
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert(_MODES[channels])
                if height is not None and width is not None and image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(image)
        except FileNotFoundError:
            raise InputError(f"image file not found: {path}") from None
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot read image {path}: {e}") from None
        if len(shape) == 4 and array.ndim == 2:
            array = array[..., None]
        arrays.append(array)
    if len({a.shape for a in arrays}) != 1:
        raise InputError(
            f"images of different sizes {[a.shape for a in arrays]} cannot form one batch for an "
            "input of unknown height/width; send them one at a time"
        )
    return cast_batch({name: np.stack(arrays)}, signature)


def load_numpy(path, signature, input_name=None) -> dict:
    """``.npy`` (one input; a missing batch axis is added) or ``.npz`` (keyed by input name)."""
    path = pathlib.Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except (ValueError, OSError) as e:
        raise InputError(f"cannot read NumPy file {path}: {e}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            batch = {k: loaded[k] for k in loaded.files}
    else:
        batch = {_single_input(signature, input_name): loaded}
    return cast_batch(batch, signature)


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def load_json(text: str, signature, input_name=None) -> dict:
    """JSON text (or ``@file``) → named batch; see the module docstring for accepted forms."""
    if text.startswith("@"):
        try:
            text = pathlib.Path(text[1:]).read_text()
        except OSError as e:
            raise InputError(f"cannot read JSON file {text[1:]}: {e}") from None
    try:
        data = _decode(json.loads(text))
    except ValueError as e:
        raise InputError(f"--json is not valid JSON: {e}") from None
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    elif isinstance(data, dict) and "inputs" in data:
        data = data["inputs"]
        if not isinstance(data, dict):
            data = {_single_input(signature, input_name): data}
    if isinstance(data, list):
        if data and all(isinstance(row, dict) for row in data):
            keys = set(data[0])
            if any(set(row) != keys for row in data):
                raise InputError("every JSON instance must name the same inputs")
            data = {k: [row[k] for row in data] for k in data[0]}
        else:
            data = {_single_input(signature, input_name): data}
    if not isinstance(data, dict):
        raise InputError(
            "--json must be a list of instances, {\"instances\": [...]}, {\"inputs\": ...} or "
            "{input name: batch}"
        )
    return cast_batch(data, signature)


def cast_batch(batch: dict, signature) -> dict:
    """Check names against the signature, cast to its dtypes, add a missing batch axis."""
    unknown = set(batch) - set(signature.inputs)
    if unknown:
        raise InputError(
            f"unknown input name(s) {sorted(unknown)}; the signature's inputs are "
            f"{sorted(signature.inputs)}"
        )
    missing = set(signature.inputs) - set(batch)
    if missing:
        raise InputError(f"missing input(s) {sorted(missing)}")
    out = {}
    for name, value in batch.items():
        dtype, shape = signature.inputs[name]
        try:
            if dtype == np.dtype(object):
                array = np.asarray(value, dtype=object)
            else:
                array = np.asarray(value).astype(dtype)
        except (ValueError, TypeError) as e:
            raise InputError(f"input {name!r} cannot be converted to {dtype}: {e}") from None
        if shape is not None and array.ndim == len(shape) - 1:
            array = array[None]
        if shape is not None:
            if array.ndim != len(shape) or any(
                want is not None and got != want
                for want, got in zip(shape[1:], array.shape[1:], strict=True)
            ):
                want = ["batch" if d is None and i == 0 else d for i, d in enumerate(shape)]
                raise InputError(
                    f"input {name!r} has shape {list(array.shape)}; the model expects {want}"
                )
        out[name] = array
    return out
