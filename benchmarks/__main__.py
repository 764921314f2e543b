"""`python -m benchmarks [SUITE ...] [--quick]` — run benchmark suites, print and save their tables.

Each suite gathers rows from modules that expose
``rows(quick: bool) -> list[benchmarks.common.Row]`` and writes ``benchmarks/results/<suite>.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import markdown_table  # noqa: E402

SUITES: dict[str, tuple[str, list[str]]] = {
    "layers": (
        "Layers: forward+backward training step vs Keras built-ins",
        [
            "benchmarks.bench_conv_pooling",
            "benchmarks.bench_elman",
            "benchmarks.bench_ksparse",
        ],
    ),
    "pipelines": (
        "Pipelines: input throughput and time to accuracy",
        ["benchmarks.bench_pipelines"],
    ),
    "serving": (
        "Serving: throughput and latency vs in-process inference",
        ["benchmarks.bench_serving"],
    ),
}
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def run_suite(name: str, quick: bool) -> str:
    title, modules = SUITES[name]
    rows = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        print(f"[bench] {module_name} ...", flush=True)
        rows.extend(module.rows(quick=quick))
    table = markdown_table(title, rows)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {unknown[0]!r}; valid suites: {', '.join(SUITES)}")
    for name in args.suites or list(SUITES):
        print(run_suite(name, args.quick), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
