"""The run vocabulary, declared once: how a run ended (with its exit code and what it says of
the service's health) and what started it.

The state database stores these values, the reconcile engine returns them, the CLI turns them
into exit codes and the service into readiness; every one of them imports them from here.
"""

from __future__ import annotations

from enum import Enum, StrEnum


class Health(Enum):
    """What a finished run says about the service (``/readyz``'s failing streak)."""

    COMPLETED = "completed"  # the run did its work: a failing streak ends here
    FAILING = "failing"  # it needs a person: counted in the failing streak
    NEUTRAL = "neutral"  # says nothing either way: stepped over


class RunStatus(StrEnum):
    """How a run ended (``RUNNING`` while it holds the lock)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every planned action succeeded (or nothing to do)
    PARTIAL = "partial"  # done, but some records failed
    FAILED = "failed"  # stopped by an error (connectivity, a bug)
    BLOCKED = "blocked"  # input gate or safety threshold, nothing written
    SKIPPED = "skipped"  # the run lock was held by another run
    INTERRUPTED = "interrupted"  # SIGTERM/SIGINT cut it short at a safe point, or the process died

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for a run that ended so (a configuration error is 2 whatever
        the status: ``RunResult.exit_code``)."""
        return _EXIT_CODES[self]

    @property
    def health(self) -> Health:
        return _HEALTH[self]

    @property
    def finished(self) -> bool:
        """A status a run ends with (every one but ``RUNNING``)."""
        return self is not RunStatus.RUNNING


_EXIT_CODES = {
    RunStatus.RUNNING: 1,
    RunStatus.SUCCEEDED: 0,
    RunStatus.PARTIAL: 4,
    RunStatus.FAILED: 1,
    RunStatus.BLOCKED: 3,
    RunStatus.SKIPPED: 3,
    RunStatus.INTERRUPTED: 1,
}

# Skipped (the lock held by the other replica), interrupted (our own SIGTERM) and running rows
# say nothing about health; failed and blocked runs need a person.
_HEALTH = {
    RunStatus.RUNNING: Health.NEUTRAL,
    RunStatus.SUCCEEDED: Health.COMPLETED,
    RunStatus.PARTIAL: Health.COMPLETED,
    RunStatus.FAILED: Health.FAILING,
    RunStatus.BLOCKED: Health.FAILING,
    RunStatus.SKIPPED: Health.NEUTRAL,
    RunStatus.INTERRUPTED: Health.NEUTRAL,
}


class Trigger(StrEnum):
    """What started a run."""

    CLI = "cli"  # `idsync reconcile`
    SCHEDULE = "schedule"  # a tick of `idsync serve`
    PLAN = "plan"  # `idsync plan`: reads and stores a plan, writes nothing
    APPLY = "apply"  # `idsync apply`: performs a stored plan's still-valid actions
    ROLLBACK = "rollback"  # `idsync rollback --yes`: builds and applies the undo of a run
