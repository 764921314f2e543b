"""Keep a long search's memory flat: process RSS, and TensorFlow's custom-gradient registry.

Every trial traces new ``tf.function`` steps. Inside a replica context the Keras optimizer's
gradient all-reduce (``ReplicaContext.all_reduce``) is a ``tf.custom_gradient``; in graph mode
TensorFlow registers each such gradient under a fresh name (``CustomGradient-<uid>``) in its
process-global gradient registry, and the registered closure keeps the traced ``FuncGraph``
alive forever (tensorflow/tensorflow#97697) — ``keras.backend.clear_session()`` does not
release it. Over a search that is ~5–10 MB per trial on LeNet-5.

:class:`TrialGradientJanitor` snapshots the registry when a trial begins and, when it has ended
and the Keras session is cleared, drops the ``CustomGradient-*`` entries the trial added: their
graphs belong to the finished trial's discarded model and steps, so nothing can differentiate
through them again. Entries that existed before the trial are never touched.
"""

from __future__ import annotations

__all__ = ["rss_mb", "TrialGradientJanitor"]

_PREFIX = "CustomGradient-"


def rss_mb() -> float:
    """Resident set size of this process in MiB (``/proc/self/status`` VmRSS, else maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _registry() -> dict | None:
    """TensorFlow's gradient registry mapping (private; None if its layout ever changes)."""
    try:
        from tensorflow.python.framework import ops
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        return None
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


class TrialGradientJanitor:
    """``begin()`` at a trial's start, ``end()`` after it (and after ``clear_session``)."""

    def __init__(self):
        self._before: set[str] | None = None

    def begin(self) -> None:
        registry = _registry()
        self._before = set(registry) if registry is not None else None

    def end(self) -> int:
        """Drop the trial's own ``CustomGradient-*`` registrations; returns how many."""
        registry = _registry()
        if registry is None or self._before is None:
            return 0
        stale = [k for k in list(registry) if k.startswith(_PREFIX) and k not in self._before]
        for key in stale:
            registry.pop(key, None)
        self._before = None
        return len(stale)
