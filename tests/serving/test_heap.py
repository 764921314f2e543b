"""serving.server.heap: loaded models frozen out of the collector's way, unloaded ones freed."""

from __future__ import annotations

import gc
import os
import shutil
import weakref

import pytest

from serving.server import heap as heap_module
from serving.server.config import ModelConfig
from serving.server.heap import FrozenHeap
from serving.server.manager import ModelManager
from serving.server.options import parse_flags
from tests.serving.conftest import make_base, start_server


class _Node:
    """A container object the collector tracks (weak-referenceable)."""


class _FakeServable:
    """What FrozenHeap.retire reads: the servable and its ``signatures``. Like a Servable's
    loaded SavedModel, its ``payload`` is a reference cycle: only the collector frees it."""

    def __init__(self):
        self.signatures = {"serving_default": _Node()}
        self.payload = _Node()
        self.payload.itself = self.payload


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def _tracked(obj) -> bool:
    """True if ``obj`` is in one of the collector's generations (so not frozen)."""
    return any(o is obj for o in gc.get_objects())


def test_settle_freezes_what_is_alive_and_only_when_something_changed():
    heap = FrozenHeap()
    node = _Node()
    assert heap.settle() is False  # nothing loaded yet: no collection, no freeze
    assert _tracked(node)
    heap.changed()
    assert heap.settle() is True
    assert heap.freezes == 1 and gc.get_freeze_count() > 0
    assert not _tracked(node)  # frozen: collections skip it
    assert heap.settle() is False and heap.freezes == 1
    assert _tracked(_Node())  # objects made after the freeze are collected as usual


def test_frozen_cycles_are_never_collected_unless_retired():
    heap = FrozenHeap()
    leaked = _FakeServable()
    leaked_ref = weakref.ref(leaked.payload)
    heap.changed()
    assert heap.settle()
    del leaked
    gc.collect()
    assert leaked_ref() is not None  # frozen garbage stays: what retire() exists for

    kept = _FakeServable()
    payload_ref = weakref.ref(kept.payload)
    heap.retire(kept)  # unload: everything is collectable again
    assert _tracked(kept)
    del kept
    assert heap.settle()
    assert payload_ref() is None  # collected before the new freeze
    assert leaked_ref() is None  # and so was the earlier garbage, unfrozen by retire()


def test_settle_waits_while_a_request_still_uses_the_retired_version():
    heap = FrozenHeap()
    servable = _FakeServable()
    in_flight = servable.signatures["serving_default"]  # a request running on the old version
    payload_ref = weakref.ref(servable.payload)
    heap.changed()
    assert heap.settle()
    heap.retire(servable)
    del servable
    assert heap.settle() is False  # its signature is alive: freezing now would keep it forever
    assert heap.settle() is False
    assert payload_ref() is not None
    del in_flight
    assert heap.settle() is True
    assert payload_ref() is None and heap.freezes == 2


def test_settle_freezes_regardless_after_max_waits():
    heap = FrozenHeap()
    stuck = _FakeServable()
    heap.retire(stuck)
    assert [heap.settle() for _ in range(heap_module.MAX_WAITS)] == [False] * heap_module.MAX_WAITS
    assert heap.settle() is True
    assert not _tracked(stuck)
    heap.changed()
    assert heap.settle() is True  # the abandoned wait does not linger


def test_a_retired_servable_in_a_cycle_is_collected_by_the_freeze_at_the_latest():
    heap = FrozenHeap()
    servable = _FakeServable()
    servable.payload.owner = servable  # now the servable itself only dies in a collection
    servable_ref = weakref.ref(servable)
    heap.retire(servable)
    del servable
    gc.disable()  # no automatic collection meanwhile (an idle server's may not come)
    try:
        assert not any(heap.settle() for _ in range(heap_module.MAX_WAITS))
        assert servable_ref() is not None
        assert heap.settle() is True
    finally:
        gc.enable()
    assert servable_ref() is None  # collected before the freeze, not frozen


def test_manager_freezes_after_loads_and_frees_unloaded_versions(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    heap = FrozenHeap()
    manager = ModelManager(heap=heap)
    manager.set_config([ModelConfig(name="toy", base_path=base)])
    assert heap.freezes == 1
    v1 = manager.resolve("toy")
    loaded_v1 = weakref.ref(v1._loaded)  # the SavedModel object graph: cyclic
    assert not _tracked(v1._loaded)
    in_flight = v1.signature("single")  # a request still running on version 1
    del v1
    shutil.copytree(toy_builds[2], os.path.join(base, "2"))
    manager.poll_once()
    assert manager.resolve("toy").version == 2
    assert heap.freezes == 1  # version 1 is unloaded but still in use: not frozen again yet
    assert _tracked(manager.resolve("toy")._loaded)
    del in_flight
    manager.poll_once()  # the next poll round
    assert heap.freezes == 2
    assert loaded_v1() is None  # the unloaded version's objects were collected, not frozen
    assert not _tracked(manager.resolve("toy")._loaded)
    manager.poll_once()
    assert heap.freezes == 2  # a round with no change does no collection


def test_a_stopped_server_hands_its_models_back(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    server = start_server(["--model_name=toy", f"--model_base_path={base}"], rest=False)
    loaded = weakref.ref(server.manager.resolve("toy")._loaded)
    assert not _tracked(loaded())  # frozen while it serves
    server.stop()
    assert _tracked(loaded())
    del server
    gc.collect()
    assert loaded() is None


def test_nopython_gc_freeze_leaves_the_collector_alone(tmp_path, toy_builds):
    base = make_base(tmp_path, "toy", toy_builds, [1])
    server = start_server(["--model_name=toy", f"--model_base_path={base}",
                           "--nopython_gc_freeze"], rest=False)
    try:
        assert server.manager._heap is None
        assert gc.get_freeze_count() == 0
        assert _tracked(server.manager.resolve("toy")._loaded)
    finally:
        server.stop()


def test_python_gc_freeze_flag():
    args = ["--model_base_path=/m"]
    assert parse_flags(args).python_gc_freeze is True
    assert parse_flags(args + ["--nopython_gc_freeze"]).python_gc_freeze is False
    assert parse_flags(args + ["--python_gc_freeze=false"]).python_gc_freeze is False
