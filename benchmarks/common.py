"""Shared benchmark harness: ratios of a candidate against a baseline, measured side by side.

Speed goals are ratios, never absolute times: both functions run in the same process, interleaved
in rounds of alternating order (candidate, baseline, then baseline, candidate, ...) so neither
always runs right after the other. A time row's ratio is the median over rounds of the two times
measured back to back in that round (``paired_ratio``): a change in machine load that lasts
longer than one round hits both times of a round alike and cancels in their ratio, where the
ratio of the two overall medians keeps it. Measured on the 2-core VM, six runs of Conv2D against
``keras.layers.Conv2D`` (the same TensorFlow ops): 0.987–1.012 paired, 0.951–1.049 as a ratio of
medians. The table still shows each side's median time.
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
    paired: float | None = None  # median of per-round ratios (rows measured in rounds)

    @property
    def ratio(self) -> float:
        """``paired`` when measured in rounds, else ``candidate_value / baseline_value``."""
        if self.paired is not None:
            return self.paired
        return self.candidate_value / self.baseline_value

    @property
    def met(self) -> bool:
        op, bound = self.goal.split()
        bound = float(bound)
        return self.ratio <= bound if op == "<=" else self.ratio >= bound


def interleaved_times(
    fns: Sequence[Callable[[], object]], *, warmup: int = 3, repeats: int = 15
) -> list[list[float]]:
    """Wall times (seconds) of each fn in ``repeats`` rounds, one call of each fn per round,
    after ``warmup`` untimed rounds: ``times[i][r]`` is fn ``i`` in round ``r``.

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
    return samples


def paired_ratio(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """``median_r(candidate[r] / baseline[r])``: the ratio of times measured in the same round.

    E.g. candidate ``[1, 1, 1, 3, 3]`` and baseline ``[2, 2, 6, 6, 6]``: the machine became 3×
    slower in round 3, after the candidate's call and before the baseline's. The paired ratio is
    0.5 (per round ``[0.5, 0.5, 1/6, 0.5, 0.5]``), the ratio of the medians 1 / 6.
    """
    if len(candidate) != len(baseline) or not candidate:
        raise ValueError(f"paired_ratio needs two equally long, non-empty sample lists; received "
                         f"{len(candidate)} and {len(baseline)} samples")
    return statistics.median(c / b for c, b in zip(candidate, baseline, strict=True))


def time_ratio_row(
    name: str,
    candidate: tuple[str, Callable[[], object]],
    baseline: tuple[str, Callable[[], object]],
    goal: str,
    *,
    warmup: int = 3,
    repeats: int = 15,
) -> Row:
    """A row showing each side's median time (ms), with the :func:`paired_ratio` as its ratio."""
    t_cand, t_base = interleaved_times([candidate[1], baseline[1]], warmup=warmup,
                                       repeats=repeats)
    return Row(name, candidate[0], baseline[0], statistics.median(t_cand) * 1e3,
               statistics.median(t_base) * 1e3, "ms", goal, paired=paired_ratio(t_cand, t_base))


PAIRED_NOTE = ("Rows measured in interleaved rounds (times, steps/s): the candidate and baseline "
               "columns are medians; the ratio is the median over rounds of the ratio of the two "
               "values measured back to back in the same round.")


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
        *([PAIRED_NOTE, ""] if any(r.paired is not None for r in rows) else []),
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
