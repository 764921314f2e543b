"""``deepline-query``: send one request to a TensorFlow Serving endpoint and print the answer.

Examples::

    deepline-query --model_name lenet5 --image digit.png                 # gRPC Predict, top-5
    deepline-query --protocol rest --model_name lenet5 --image a.png b.png --classify
    deepline-query --model_name lenet5 --npy batch.npy --format json
    deepline-query --protocol rest --model_name elman --json '{"instances": ["hello"]}'

The input shape, dtype and name come from the model's metadata (GetModelMetadata / REST
``.../metadata``): images are converted to grayscale/RGB and resized to the input's height and
width, and sent as RAW pixels 0–255 (the exported model rescales). Predict results with a
``probabilities`` output print the top classes; ``--classify`` prints the classify signature's
labels and scores; anything else prints as JSON. Failures (server unreachable, model not
found, bad input) print ``error: ...`` on stderr and exit with 1 (request) or 2 (input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

__all__ = ["main", "build_parser", "format_result"]

EXIT_REQUEST_FAILED = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepline-query",
        description="Query a TensorFlow Serving (or deepline) model server over gRPC or REST.",
    )
    p.add_argument("--server", default="localhost:8500", help="gRPC address (default %(default)s)")
    p.add_argument("--rest", default="localhost:8501",
                   help="REST address, host:port or http://host:port (default %(default)s)")
    p.add_argument("--protocol", choices=("grpc", "rest"), default="grpc")
    p.add_argument("--model_name", default="lenet5", help="served model name (default %(default)s)")
    version = p.add_mutually_exclusive_group()
    version.add_argument("--model_version", type=int, default=None, help="a version number")
    version.add_argument("--version_label", default=None, help="a version label, e.g. stable")
    p.add_argument("--signature_name", default=None,
                   help="signature to call (default serving_default; classify/regress with "
                        "--classify/--regress)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", nargs="+", metavar="FILE", help="PNG/JPEG file(s): one batch")
    source.add_argument("--npy", metavar="FILE", help=".npy array (or .npz keyed by input name)")
    source.add_argument("--json", metavar="JSON",
                        help="instances/inputs JSON, or @file.json")
    p.add_argument("--input_name", default=None,
                   help="input to feed when the signature has several")
    method = p.add_mutually_exclusive_group()
    method.add_argument("--classify", action="store_true",
                        help="use the Classify method (tf.Example inputs)")
    method.add_argument("--regress", action="store_true",
                        help="use the Regress method (tf.Example inputs)")
    p.add_argument("--top_k", type=int, default=5, help="classes to print per example")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (top classes for classifiers) or json")
    return p


def _top_k(scores, k):
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return order


def _jsonable(value):
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_jsonable(v) for v in value]
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_result(kind: str, result, top_k: int = 5, fmt: str = "text") -> str:
    """Render a result.

    kind: "predict" (``{output name: array}``), "classify" (per example ``[(label, score)]``)
    or "regress" (per example float).
    """
    if fmt == "json":
        if kind == "predict":
            return json.dumps(_jsonable(result))
        if kind == "classify":
            return json.dumps({"results": [[[lab, s] for lab, s in row] for row in result]})
        return json.dumps({"results": list(result)})
    lines = []
    if kind == "classify":
        for i, row in enumerate(result):
            ranked = sorted(row, key=lambda ls: -ls[1])[:top_k]
            lines.append(f"[{i}] " + "  ".join(f"{label}: {score:.4f}" for label, score in ranked))
        return "\n".join(lines)
    if kind == "regress":
        return "\n".join(f"[{i}] {value:.6g}" for i, value in enumerate(result))
    probabilities = result.get("probabilities") if isinstance(result, dict) else None
    if probabilities is not None and np.ndim(probabilities) == 2:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        for i, row in enumerate(probabilities):
            if row.shape[0] == 1:  # one sigmoid column: P(class 1)
                row = np.array([1.0 - row[0], row[0]])
            lines.append(
                f"[{i}] " + "  ".join(f"{c}: {row[c]:.4f}" for c in _top_k(row, top_k))
            )
        return "\n".join(lines)
    return json.dumps(_jsonable(result))


def _load_batch(args, signature):
    from serving.query_inputs import load_images, load_json, load_numpy

    if args.image:
        return load_images(args.image, signature, args.input_name)
    if args.npy:
        return load_numpy(args.npy, signature, args.input_name)
    return load_json(args.json, signature, args.input_name)


def run(args) -> tuple[str, object]:
    """Execute the query described by parsed ``args``; return ``(kind, result)``."""
    from serving.transport import GrpcTransport, ModelRef, RestTransport

    ref = ModelRef(args.model_name, args.model_version, args.version_label)
    if args.protocol == "grpc":
        transport = GrpcTransport(args.server, ref, timeout=args.timeout)
    else:
        transport = RestTransport(args.rest, ref, timeout=args.timeout)
    try:
        if args.classify or args.regress:
            kind = "classify" if args.classify else "regress"
            # The tf.Example features mirror serving_default's inputs (serving.examples).
            signature = transport.signature("serving_default")
            batch = _load_batch(args, signature)
            call = transport.classify if args.classify else transport.regress
            return kind, call(batch, args.signature_name or kind)
        signature_name = args.signature_name or "serving_default"
        signature = transport.signature(signature_name)
        batch = _load_batch(args, signature)
        result = transport.predict(batch, signature_name)
        if not isinstance(result, dict):  # REST row format with one unnamed output
            names = list(signature.outputs)
            result = {names[0] if len(names) == 1 else "predictions": result}
        return "predict", result
    finally:
        transport.close()


def main(argv=None) -> int:
    """Console entry point (``deepline-query``); returns the process exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
    from serving.query_inputs import InputError
    from serving.transport import QueryError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be >= 1; received {args.top_k}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0; received {args.timeout}")
    try:
        kind, result = run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except QueryError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REQUEST_FAILED
    print(format_result(kind, result, top_k=args.top_k, fmt=args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
