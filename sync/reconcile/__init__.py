"""The reconcile engine: snapshot -> classify -> plan (pure) -> apply -> record.

:func:`run` is the one entry point the CLI and the scheduler call. The pure pieces are public too,
for tests and tools that want a plan without a database or a network.
"""

from sync.reconcile._classify import classify
from sync.reconcile._gates import check_input_gate, check_thresholds
from sync.reconcile._plan import plan, summarize
from sync.reconcile._result import EXIT_CODES, RunResult
from sync.reconcile._review import apply_plan, make_plan, rollback
from sync.reconcile._run import run
from sync.status import RunStatus

__all__ = [
    "EXIT_CODES",
    "RunResult",
    "RunStatus",
    "apply_plan",
    "check_input_gate",
    "check_thresholds",
    "classify",
    "make_plan",
    "plan",
    "rollback",
    "run",
    "summarize",
]
