"""Model lifecycle: version discovery, version policy, load-before-unload swaps, labels, status.

For every configured model the manager lists ``base_path`` for integer-named version directories,
applies the version policy (``latest`` N — default 1 —, ``all``, ``specific``) to get the aspired
versions, then:

1. loads (and warms up) each aspired version that is not loaded yet: ``START → LOADING →
   AVAILABLE``; a load failure leaves the version in ``END`` with the error in its status and is
   retried ``max_num_load_retries`` times, ``load_retry_interval_micros`` apart;
2. only then unloads versions that are no longer aspired (``UNLOADING → END``), and only while at
   least one aspired version is ``AVAILABLE`` — a corrupt new version never takes down the
   version being served (TF Serving's availability-preserving policy).

Requests see an immutable snapshot (``{version: Servable}``) swapped atomically, so no request
fails during a swap; requests already running on an unloaded version finish on it.

After every poll round or configuration change that loaded or unloaded a version, the manager
lets its ``heap`` (``serving.server.heap``) freeze the objects then alive out of the garbage
collector's way; unloaded servables are retired to it first, so they can still be collected.

Version labels (``version_labels`` in the model config) map names to versions; a label may point
only at an AVAILABLE version unless ``allow_version_labels_for_unavailable_models``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable

from serving.server.config import ModelConfig
from serving.server.errors import (
    Code,
    ServingError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from serving.server.heap import FrozenHeap
from serving.server.servable import Servable

log = logging.getLogger("serving.server")


@dataclasses.dataclass
class VersionState:
    version: int
    state: str = "START"  # START | LOADING | AVAILABLE | UNLOADING | END
    error: ServingError | None = None
    attempts: int = 0
    next_retry: float = 0.0


class ManagedModel:
    def __init__(self, config: ModelConfig):
        self.config = config
        self.states: dict[int, VersionState] = {}
        self.available: dict[int, Servable] = {}  # replaced, never mutated
        self.labels: dict[str, int] = {}
        self.latest: Servable | None = None


def list_versions(base_path: str) -> list[int] | None:
    """Integer-named subdirectories of ``base_path`` (None if the path cannot be listed)."""
    try:
        entries = os.listdir(base_path)
    except OSError:
        return None
    versions = []
    for e in entries:
        if e.isdigit() and os.path.isdir(os.path.join(base_path, e)):
            versions.append(int(e))
    return sorted(versions)


class ModelManager:
    """Owns every model's versions; ``resolve`` is lock-free for request threads."""

    def __init__(self, *, warmup: Callable[[Servable], None] | None = None,
                 on_unload: Callable[[Servable], None] | None = None,
                 heap: FrozenHeap | None = None,
                 allow_labels_for_unavailable: bool = False,
                 max_load_retries: int = 5, load_retry_interval_s: float = 60.0):
        self._models: dict[str, ManagedModel] = {}
        self._warmup = warmup
        self._on_unload = on_unload
        self._heap = heap
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._max_retries = max_load_retries
        self._retry_interval = load_retry_interval_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.load_count = 0

    # -- configuration ---------------------------------------------------------------------------
    def set_config(self, models: list[ModelConfig], *, reload: bool = False) -> None:
        """Apply a model list: add/update/remove models, load synchronously, then apply labels.

        At start-up and for the config file (``reload=False``) a label may name a version this
        very list loads; one that still points at an unavailable version raises ServingError
        (FAILED_PRECONDITION) after the models were updated, and the previous labels stay.

        ``reload=True`` (HandleReloadConfigRequest) follows TF Serving's ``ReloadConfig``: the
        labels are checked against the versions available *before* the change, and a bad one
        raises FAILED_PRECONDITION with nothing changed; after the change, a model the list
        adds that has no available version raises UNKNOWN ("N model(s) did not become
        available: ..."), with the rest of the list applied (TF Serving waits for such a model
        until it loads, forever if it never does).
        """
        with self._lock:
            try:
                if reload:
                    self._check_labels(models, self._models)
                    new_names = [m.name for m in models if m.name not in self._models]
                self._apply_config(models)
                if reload:
                    self._check_available(new_names)
            finally:
                self._settle()

    def _label_error(self, cfg: ModelConfig, mm: ManagedModel | None) -> str | None:
        """TF Serving's message for the first of ``cfg``'s labels that names a version ``mm``
        (None: a model not loaded yet) has not available, else None."""
        if self._allow_unavailable_labels:
            return None
        for _, v in cfg.labels:
            if mm is None or v not in mm.available:
                return (f"Request to assign label to version {v} of model {cfg.name}, which is "
                        f"not currently available for inference")
        return None

    def _check_labels(self, models: list[ModelConfig], current: dict[str, ManagedModel]) -> None:
        for cfg in models:
            error = self._label_error(cfg, current.get(cfg.name))
            if error is not None:
                raise failed_precondition(error)

    def _check_available(self, names: list[str]) -> None:
        """UNKNOWN, TF Serving's message, when a model of ``names`` has no available version."""
        unavailable, parts = 0, []
        for name in names:
            mm = self._models[name]
            if mm.latest is not None:
                continue
            unavailable += 1
            failed = [f"{{name: {name} version: {v}}} due to error: "
                      f"{st.error.code.name}: {st.error.message}"
                      for v, st in sorted(mm.states.items())
                      if st.state == "END" and st.error is not None]
            parts.extend(failed or [f"{{name: {name}}} (no version directory under "
                                    f"{mm.config.base_path})"])
        if unavailable:
            raise ServingError(Code.UNKNOWN, f"{unavailable} model(s) did not become available: "
                                             f"{{{''.join(p + ', ' for p in parts)}}}")

    def _apply_config(self, models: list[ModelConfig]) -> None:
        new = dict(self._models)
        wanted = {m.name for m in models}
        for name in list(new):
            if name not in wanted:
                self._unload_all(new.pop(name))
        for cfg in models:
            mm = new.get(cfg.name)
            if mm is None:
                mm = ManagedModel(cfg)
                new[cfg.name] = mm
            else:
                mm.config = cfg
        self._models = new
        for cfg in models:
            self._poll_model(self._models[cfg.name])
        errors = []
        for cfg in models:
            mm = self._models[cfg.name]
            error = self._label_error(cfg, mm)
            if error is not None:
                errors.append(error)
            else:
                mm.labels = dict(cfg.labels)
        if errors:
            raise failed_precondition("; ".join(errors))

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def servables(self) -> list[Servable]:
        """Every loaded version of every model."""
        return [s for mm in self._models.values() for s in mm.available.values()]

    # -- polling ---------------------------------------------------------------------------------
    def poll_once(self) -> None:
        with self._lock:
            try:
                for mm in list(self._models.values()):
                    self._poll_model(mm)
            finally:
                self._settle()

    def _settle(self) -> None:
        if self._heap is not None:
            self._heap.settle()

    def start_polling(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return

        def loop():
            while not self._stop.wait(interval_s):
                try:
                    self.poll_once()
                except Exception:  # noqa: BLE001 - the poller must never die
                    log.exception("model poll failed")

        self._thread = threading.Thread(target=loop, name="deepline-model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; hand every loaded version back to the heap (collectable again once the
        manager is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._heap is not None:
            with self._lock:
                for servable in self.servables():
                    self._heap.retire(servable)

    def _poll_model(self, mm: ManagedModel) -> None:
        on_disk = list_versions(mm.config.base_path)
        if on_disk is None:
            if not mm.states:
                log.warning("model %s: base path %s cannot be listed", mm.config.name,
                            mm.config.base_path)
            return  # keep serving what is loaded
        aspired = mm.config.policy.select(on_disk)
        now = time.monotonic()
        for v in sorted(aspired, reverse=True):
            st = mm.states.get(v)
            if st is not None and st.state == "AVAILABLE":
                continue
            if st is not None and st.state == "END" and st.error is not None:
                if st.attempts > self._max_retries or now < st.next_retry:
                    continue
            elif st is not None and st.state == "END":
                pass  # unloaded earlier and aspired again: reload
            self._load(mm, v)
        # Unload versions no longer aspired, only while an aspired version is serving.
        if any(v in mm.available for v in aspired) or not on_disk:
            for v in sorted(mm.available):
                if v not in aspired:
                    self._unload(mm, v)
        for v, st in list(mm.states.items()):
            if v not in aspired and st.state == "END" and st.error is not None:
                del mm.states[v]  # a failed version that disappeared: forget it

    def _load(self, mm: ManagedModel, version: int) -> None:
        st = mm.states.get(version) or VersionState(version)
        st.state, st.error = "LOADING", None
        mm.states[version] = st
        path = os.path.join(mm.config.base_path, str(version))
        try:
            servable = Servable.load(mm.config.name, version, path)
            if self._warmup is not None:
                self._warmup(servable)
        except Exception as exc:  # noqa: BLE001 - reported in model status
            from serving.server.errors import from_exception

            err = from_exception(exc)
            st.state, st.error = "END", err
            st.attempts += 1
            st.next_retry = time.monotonic() + self._retry_interval
            log.error("model %s version %d failed to load: %s", mm.config.name, version,
                      err.message)
            return
        available = dict(mm.available)
        available[version] = servable
        self._publish(mm, available)
        st.state, st.attempts = "AVAILABLE", 0
        self.load_count += 1
        if self._heap is not None:
            self._heap.changed()
        log.info("model %s version %d is AVAILABLE", mm.config.name, version)

    def _unload(self, mm: ManagedModel, version: int) -> None:
        st = mm.states.setdefault(version, VersionState(version))
        st.state = "UNLOADING"
        available = dict(mm.available)
        servable = available.pop(version, None)
        self._publish(mm, available)
        if servable is not None and self._on_unload is not None:
            self._on_unload(servable)
        if servable is not None and self._heap is not None:
            self._heap.retire(servable)
        st.state, st.error = "END", None
        log.info("model %s version %d unloaded", mm.config.name, version)

    def _unload_all(self, mm: ManagedModel) -> None:
        for v in sorted(mm.available):
            self._unload(mm, v)

    @staticmethod
    def _publish(mm: ManagedModel, available: dict[int, Servable]) -> None:
        mm.available = available
        mm.latest = available[max(available)] if available else None

    # -- request path ----------------------------------------------------------------------------
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a model spec (``label``: a version label was given, even an empty
        one), else TF Serving's error: INVALID_ARGUMENT for a spec without a name or with a
        label the model does not have (also for an unknown model), NOT_FOUND for a version
        that is not available."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        mm = self._models.get(name)
        if label is not None:
            v = mm.labels.get(label) if mm is not None else None
            if v is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = v
        if version is None:
            servable = mm.latest if mm is not None else None
            if servable is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            return servable
        servable = mm.available.get(version) if mm is not None else None
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: int | None = None) -> list[VersionState]:
        """Version states (GetModelStatus), newest first: every version of the model, or only
        ``version``. As in TF Serving, a version label plays no part in model status."""
        mm = self._models.get(name)
        if version is not None:
            st = mm.states.get(version) if mm is not None else None
            if st is None:
                raise not_found(f"Could not find version {version} of model {name}")
            return [dataclasses.replace(st)]
        if mm is None or not mm.states:
            raise not_found(f"Could not find any versions of model {name}")
        return [dataclasses.replace(mm.states[v]) for v in sorted(mm.states, reverse=True)]

    def labels(self, name: str) -> dict[str, int]:
        mm = self._models.get(name)
        return dict(mm.labels) if mm else {}
