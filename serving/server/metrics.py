"""Prometheus metrics in TF Serving's names, rendered in the Prometheus text format (0.0.4).

- ``:tensorflow:serving:request_count{model_name, status}`` — counter of requests per model and
  final status (``OK``, ``INVALID_ARGUMENT``, ...).
- ``:tensorflow:serving:request_latency{model_name, API, entrypoint}`` — histogram of end-to-end
  request latency in microseconds (``API``: predict/classify/regress/multi_inference/
  get_model_metadata/get_model_status; ``entrypoint``: ``GRPC`` or ``REST``).
- ``:tensorflow:serving:batching_session:processed_batch_size{model_name}`` — histogram of the
  (padded) size of each batch run by server-side batching.
- ``:tensorflow:serving:batching_session:batched_requests{model_name}`` — counter of requests
  that went through server-side batching (with the batch count, shows merging).
"""

from __future__ import annotations

import bisect
import threading

LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))


class Counter:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...]):
        self.name, self.help, self.labels = name, help_, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[label_values] = self._values.get(label_values, 0.0) + amount

    def value(self, *label_values: str) -> float:
        return self._values.get(label_values, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, v in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.labels, key)} {_fmt(v)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...], buckets):
        self.name, self.help, self.labels = name, help_, labels
        self.buckets = tuple(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], list] = {}  # key -> [counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str, times: int = 1) -> None:
        """Observe ``value`` (``times`` times: as many observations of the same value)."""
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            s = self._series.get(label_values)
            if s is None:
                s = self._series[label_values] = [0] * (len(self.buckets) + 1) + [0.0, 0]
            s[i] += times
            s[-2] += value * times
            s[-1] += times

    def count(self, *label_values: str) -> int:
        s = self._series.get(label_values)
        return s[-1] if s else 0

    def total(self, *label_values: str) -> float:
        s = self._series.get(label_values)
        return s[-2] if s else 0.0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, s in sorted(self._series.items()):
                cumulative = 0
                for b, c in zip(self.buckets, s[:len(self.buckets)], strict=True):
                    cumulative += c
                    le = 'le="' + _fmt(b) + '"'
                    lines.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {cumulative}")
                inf = 'le="+Inf"'
                lines.append(f"{self.name}_bucket{_labels(self.labels, key, inf)} {s[-1]}")
                lines.append(f"{self.name}_sum{_labels(self.labels, key)} {_fmt(s[-2])}")
                lines.append(f"{self.name}_count{_labels(self.labels, key)} {s[-1]}")
        return lines


class Metrics:
    """The server's metric registry."""

    def __init__(self):
        self.request_count = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.", ("model_name", "status"))
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"), LATENCY_BUCKETS_US)
        self.batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.", ("model_name",), BATCH_BUCKETS)
        self.batched_requests = Counter(
            ":tensorflow:serving:batching_session:batched_requests",
            "Requests processed through server-side batching.", ("model_name",))

    def record(self, model_name: str, api: str, entrypoint: str, status: str,
               latency_us: float, requests: int = 1) -> None:
        """Count ``requests`` requests that ended with ``status`` after ``latency_us`` each (the
        requests of one merged batch task share their latency)."""
        self.request_count.inc(model_name, status, amount=requests)
        self.request_latency.observe(latency_us, model_name, api, entrypoint, times=requests)

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.request_count, self.request_latency, self.batch_size,
                  self.batched_requests):
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
