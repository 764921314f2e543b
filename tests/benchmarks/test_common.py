"""The benchmark harness's statistics: paired ratios, interleaving, and the table."""

import itertools

import pytest

from benchmarks.common import (
    PAIRED_NOTE,
    Row,
    interleaved_times,
    markdown_table,
    paired_ratio,
    time_ratio_row,
)


def test_paired_ratio_of_a_uniform_slowdown_equals_the_ratio_of_medians():
    assert paired_ratio([1, 2, 4], [2, 4, 8]) == 0.5


def test_paired_ratio_cancels_a_slowdown_that_begins_within_a_round():
    # 3x slower from round 3 on, starting after the candidate's call in that round.
    candidate, baseline = [1, 1, 1, 3, 3], [2, 2, 6, 6, 6]
    assert paired_ratio(candidate, baseline) == 0.5
    assert sorted(candidate)[2] / sorted(baseline)[2] == pytest.approx(1 / 6)


@pytest.mark.parametrize("candidate, baseline", [([], []), ([1.0], [1.0, 2.0])])
def test_paired_ratio_rejects_unpaired_samples(candidate, baseline):
    with pytest.raises(ValueError, match=f"received {len(candidate)} and {len(baseline)}"):
        paired_ratio(candidate, baseline)


class _FakeClock:
    """``time.perf_counter`` that advances only when a timed function says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_times_alternate_the_order_and_pair_rounds(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr("benchmarks.common.time.perf_counter", clock)
    calls = []
    rounds = itertools.count()

    def timed(name, cost):
        def fn():
            calls.append(name)
            clock.now += cost * (1 + next(rounds) // 4)  # the machine slows down as it runs
        return fn

    times = interleaved_times([timed("a", 1.0), timed("b", 2.0)], warmup=1, repeats=4)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == [[1.0, 2.0, 2.0, 3.0], [2.0, 4.0, 4.0, 6.0]]


def test_time_ratio_row_reports_medians_and_the_paired_ratio(monkeypatch):
    monkeypatch.setattr("benchmarks.common.interleaved_times",
                        lambda fns, **_: [[1.0, 1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 6.0, 6.0, 6.0]])
    row = time_ratio_row("r", ("cand", None), ("base", None), "<= 0.6", repeats=5)
    assert (row.candidate_value, row.baseline_value) == (1000.0, 6000.0)
    assert row.ratio == 0.5 and row.met
    table = markdown_table("T", [row])
    assert PAIRED_NOTE in table
    assert "| r | cand | base | 1000.000 ms | 6000.000 ms | 0.500 | <= 0.6 | yes |" in table


def test_rows_without_rounds_keep_the_ratio_of_their_values():
    row = Row("throughput", "a", "b", 3.0, 4.0, "img/s", ">= 0.8")
    assert row.ratio == 0.75 and not row.met
    assert PAIRED_NOTE not in markdown_table("T", [row])
