"""A run lets the garbage collector run rarely, and gives the process its settings back."""

from __future__ import annotations

import gc

import pytest

from sync.reconcile._run import _GC_THRESHOLD, _rare_collections


def _fail_inside(seen: list[tuple[int, int, int]]) -> None:
    with _rare_collections():
        seen.append(gc.get_threshold())
        raise RuntimeError


def test_collector_threshold_is_raised_during_a_run_and_restored_after_a_failure() -> None:
    """Inside the block the young-generation threshold is the run's; after it, even on error, the old one."""
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    with pytest.raises(RuntimeError):
        _fail_inside(seen)
    assert seen == [(_GC_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before
    assert gc.isenabled()
