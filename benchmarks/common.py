"""Shared benchmark harness: ratios of a candidate against a baseline, measured side by side.

Speed goals are ratios, never absolute times: both functions run in the same process, interleaved
in rounds of alternating order (candidate, baseline, then baseline, candidate, ...) so drifts in
machine load hit both equally and neither always runs right after the other, and the ratio of the
two medians is reported.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: ``ratio = candidate / baseline`` of median times (or of a metric)."""

    name: str
    candidate: str
    baseline: str
    candidate_value: float
    baseline_value: float
    unit: str
    goal: str  # e.g. "<= 1.05", ">= 1.5"

    @property
    def ratio(self) -> float:
        return self.candidate_value / self.baseline_value

    @property
    def met(self) -> bool:
        op, bound = self.goal.split()
        bound = float(bound)
        return self.ratio <= bound if op == "<=" else self.ratio >= bound


def median_times(
    fns: Sequence[Callable[[], object]], *, warmup: int = 3, repeats: int = 15
) -> list[float]:
    """Median wall time (seconds) of each fn, calls interleaved after warm-up.

    Rounds alternate the order (A B, B A, A B, ...), so neither fn always runs right after the
    other. Each fn must block until its work is done (return a NumPy value or call ``.numpy()``).
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for round_index in range(repeats):
        for i in order if round_index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fns[i]()
            samples[i].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def time_ratio_row(
    name: str,
    candidate: tuple[str, Callable[[], object]],
    baseline: tuple[str, Callable[[], object]],
    goal: str,
    *,
    warmup: int = 3,
    repeats: int = 15,
) -> Row:
    """A row whose ratio is candidate median time / baseline median time (ms)."""
    t_cand, t_base = median_times([candidate[1], baseline[1]], warmup=warmup, repeats=repeats)
    return Row(name, candidate[0], baseline[0], t_cand * 1e3, t_base * 1e3, "ms", goal)


def machine_description() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{platform.node() or 'unknown'}: {cpu}, {os.cpu_count()} CPU cores, {python}"


def markdown_table(title: str, rows: Sequence[Row]) -> str:
    """Render rows as a Markdown table with the machine it ran on."""
    lines = [
        f"## {title}",
        "",
        f"Machine: {machine_description()}",
        "",
        "| benchmark | candidate | baseline | candidate | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.candidate} | {r.baseline} | {r.candidate_value:.3f} {r.unit} "
            f"| {r.baseline_value:.3f} {r.unit} | {r.ratio:.3f} | {r.goal} | "
            f"{'yes' if r.met else 'NO'} |"
        )
    return "\n".join(lines) + "\n"
