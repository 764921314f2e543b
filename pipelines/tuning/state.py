"""KerasTuner's state files made crash-safe: atomic writes, and a resume that trusts trial files.

KerasTuner (1.4) keeps a search's state in JSON files of the tuner directory, written in place
by ``keras_tuner.src.utils.save_json``:

    oracle.json         the oracle (ongoing trials, end order, retry queue, seeds, ...), saved
                        when a trial is created and when it ends
    tuner0.json         the tuner; a new tuner reloads the directory only if this file exists,
                        and KerasTuner writes it first after the first trial has ended
    trial_<id>/trial.json   each trial (hyperparameters, metrics, score, status)

A process killed (``kill -9``, out of memory, a lost machine) can leave three inconsistencies:

1. A half-written file, which the next run cannot parse. :func:`atomic_state_writes` routes
   every write through a temp file and ``os.replace``.
2. No ``tuner0.json`` although trial 0 has finished: the rerun starts afresh and overwrites
   trial 0. The tuners of :mod:`pipelines.tuning.search` save their state before the first
   trial, so a rerun always reloads.
3. ``trial.json`` says COMPLETED (``Oracle.end_trial`` writes it first) but ``oracle.json``
   still lists the trial as ongoing, and reloading sends every ongoing trial for retry: the
   finished trial would run again. :func:`settle_finished_trials` ends such trials instead.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

from pipelines.rundir import write_text_atomic

__all__ = ["atomic_state_writes", "settle_finished_trials"]

#: Trial statuses that ``Oracle.end_trial`` never sends for retry.
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED"})

_patch_lock = threading.Lock()
_patch_depth = 0
_original_save_json = None


def _save_json_atomic(path, obj) -> str:
    """``keras_tuner.src.utils.save_json`` with an atomic write (same return value)."""
    text = json.dumps(obj)
    write_text_atomic(path, text)
    return text


@contextlib.contextmanager
def atomic_state_writes() -> Iterator[None]:
    """Within the block, KerasTuner writes its JSON state files atomically.

    Replaces ``keras_tuner.src.utils.save_json`` (used by ``Oracle.save``, ``Tuner.save``,
    ``Trial.save`` and the build configs) and restores it on exit; blocks may nest. Local
    paths only, as are the project's tuner directories.
    """
    global _patch_depth, _original_save_json
    from keras_tuner.src import utils

    with _patch_lock:
        if _patch_depth == 0:
            if not callable(getattr(utils, "save_json", None)):
                raise RuntimeError("keras_tuner.src.utils.save_json is gone: this KerasTuner "
                                   "is not the version pinned in pyproject.toml")
            _original_save_json = utils.save_json
            utils.save_json = _save_json_atomic
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                utils.save_json = _original_save_json


def settle_finished_trials(oracle) -> list[str]:
    """End the reloaded trials whose own file says they finished; return their ids.

    ``Oracle.reload`` queues every trial that ``oracle.json`` lists as ongoing for a retry.
    A trial whose ``trial.json`` is COMPLETED or FAILED had ended (that file is written first
    in ``Oracle.end_trial``) before the process died: it leaves the retry queue and joins the
    end order, as ``end_trial`` would have done, and is not run again.
    """
    settled = []
    for trial_id in list(oracle._retry_queue):
        trial = oracle.trials.get(trial_id)
        if trial is None or trial.status not in FINAL_STATUSES:
            continue
        oracle._retry_queue.remove(trial_id)
        if trial_id not in oracle.end_order:
            oracle.end_order.append(trial_id)
            oracle._run_times[trial_id] += 1
        settled.append(trial_id)
    return settled
