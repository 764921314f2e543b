"""Keep loaded models out of the way of CPython's cyclic garbage collector (``gc.freeze``).

A server process with TensorFlow and one loaded LeNet-5 tracks about 400,000 container objects
(the modules, the loaded SavedModel's trackables and functions). A full (generation 2) collection
visits every one of them while it holds the GIL: about 200 ms on the development VM, during
which no request moves. Under load such collections come by themselves: the objects of requests
in flight survive the young generations, and once the survivors reach a quarter of the old
generation a full collection runs. At 32 gRPC clients that was 4 full collections in 30 s, a
32-client p99 of 46.6 ms and a slowest request of 259 ms.

:meth:`FrozenHeap.settle`, called after model loads and unloads, collects and then freezes what
survived: frozen objects sit in a permanent generation that collections skip, so the full
collections that still come visit only the objects created since (under 1 ms each). The same
load with the models frozen: 16 full collections in 30 s, p99 20.1 ms, slowest 82 ms.

Frozen objects are never collected, so an unloaded version's reference cycles would leak if
they stayed frozen. :meth:`FrozenHeap.retire` unfreezes everything; a later ``settle`` collects
them and freezes again, but only once the retired servable and its signatures are gone (a
request still running on the old version keeps them alive, and freezing then would freeze the
old version with them). It tells by weak references, without collecting: a ``Servable`` and its
``Signature`` objects die by reference counting when the last request lets go, and what they
held (the SavedModel's cycles) is collected by the settle's own collection. ``settle`` waits at
most :data:`MAX_WAITS` calls, then collects and freezes anyway (so a retired servable that only
a collection can free is freed then); whatever that freezes alive and dies later is collected
after the next ``retire``.

``gc.freeze`` is process-wide, so the process has one :data:`HEAP`; every server in the process
shares it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref

log = logging.getLogger("serving.server")

# Settles (model poll rounds: --file_system_poll_wait_seconds apart) to wait for an unloaded
# version's last request before freezing regardless.
MAX_WAITS = 10


class FrozenHeap:
    """Freezes the objects alive after model loads; unfreezes for unloads (module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._dirty = False  # something was loaded or retired since the last freeze
        self._retired: list[weakref.ref] = []
        self._waits = 0
        self.freezes = 0  # completed freezes (for tests and logs)

    def changed(self) -> None:
        """A model version was loaded: the next :meth:`settle` freezes its objects."""
        with self._lock:
            self._dirty = True

    def retire(self, servable) -> None:
        """``servable`` was unloaded (or its server stopped): unfreeze everything, so that the
        collector can free it once its last request is done."""
        refs = [weakref.ref(servable)]
        refs += [weakref.ref(s) for s in servable.signatures.values()]
        with self._lock:
            gc.unfreeze()
            self._retired.extend(refs)
            self._dirty = True

    def settle(self) -> bool:
        """Collect, then freeze every object alive, unless a retired servable is still in use
        (then wait for a later call, at most :data:`MAX_WAITS` times). True if it froze."""
        with self._lock:
            if not self._dirty:
                return False
            self._retired = [r for r in self._retired if r() is not None]
            if self._retired and self._waits < MAX_WAITS:
                self._waits += 1
                return False
            start = time.perf_counter()
            gc.collect()
            gc.freeze()
            self._retired, self._waits, self._dirty = [], 0, False
            self.freezes += 1
        log.info("froze %d objects out of the garbage collector's way in %.0f ms",
                 gc.get_freeze_count(), (time.perf_counter() - start) * 1e3)
        return True


HEAP = FrozenHeap()
