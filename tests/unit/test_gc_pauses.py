"""Each garbage collection's pause, as the ``presto_gc_pause_seconds`` metric shows it."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from presto_deck.infrastructure.observability.metrics import time_garbage_collections


def _count(generation: int) -> float:
    labels = {"generation": str(generation)}
    return REGISTRY.get_sample_value("presto_gc_pause_seconds_count", labels) or 0.0


def test_each_collection_is_observed_once_by_generation_however_often_timing_is_started() -> None:
    gc.disable()  # only the collections below
    try:
        before = [_count(generation) for generation in range(3)]
        time_garbage_collections()
        time_garbage_collections()
        gc.collect(2)
        gc.collect(1)
    finally:
        gc.enable()

    assert [_count(g) - before[g] for g in range(3)] == [0, 1, 1]
