"""The CLI keeps glibc's mmap threshold fixed, unless the operator tuned it (sync/_malloc.py)."""

from __future__ import annotations

import platform
import sys
from typing import TYPE_CHECKING

from sync._malloc import fix_mmap_threshold

if TYPE_CHECKING:
    import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_the_threshold_is_fixed_on_glibc() -> None:
    """On Linux with glibc the call sets the threshold (mallopt accepts it); elsewhere it does nothing."""
    assert fix_mmap_threshold() is GLIBC


def test_an_operators_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With MALLOC_MMAP_THRESHOLD_ in the environment nothing is set."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "262144")
    assert fix_mmap_threshold() is False
