"""Only a run that keeps its read starts a delta round (issue 19): Protime keeps one active delta
per collection, so a round started by a dry run, a plan or `config check` would replace the link
the real runs stored. Asserted from the simulator's request log, over real HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from cli_support import CliResult

    from e2e.harness import Harness
    from sync.simulator import LoggedRequest

INCREMENTAL = {"IDSYNC_SCHEDULE__FULL_READ_EVERY": "24h"}


def _rounds_started(h: Harness) -> list[LoggedRequest]:
    """Requests that start a delta round: `?delta` on /people without a continuation token."""
    return [
        r
        for r in h.sim.request_log
        if r.path.endswith("/people")
        and "delta" in r.query.split("&")
        and "continuationToken" not in r.query
    ]


def _reads(h: Harness) -> list[LoggedRequest]:
    return [r for r in h.sim.request_log if "/people" in r.path]


def test_read_only_commands_never_start_a_round_and_the_real_runs_link_survives(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """config check, dry runs (first, full and incremental) and `idsync plan` start no delta
    round; the next real run still reads through the link the first real run stored."""
    h = served()
    env = {**h.env(), **INCREMENTAL}
    for args in (("config", "check"), ("reconcile", "--dry-run"), ("plan",)):
        result = idsync(*args, env=env)
        assert result.code in (0, 3), (args, result.output)  # 3: a plan that would block
    assert _reads(h), "the commands read Protime"
    assert _rounds_started(h) == []

    real = idsync("reconcile", env=env)
    assert real.code == 0, real.output
    assert len(_rounds_started(h)) == 1

    h.sim.request_log.clear()
    for args in (
        ("reconcile", "--dry-run"),
        ("reconcile", "--dry-run", "--full"),
        ("plan",),
        ("plan", "--full"),
        ("config", "check"),
    ):
        result = idsync(*args, env=env)
        assert result.code in (0, 3), (args, result.output)
    assert _rounds_started(h) == []
    assert any(r.path.endswith("/delta/people") for r in h.sim.request_log)

    h.sim.request_log.clear()
    again = idsync("reconcile", "--json", env=env)
    assert again.code == 0, again.output
    assert '"protime_read": "incremental"' in again.stdout
    assert _rounds_started(h) == []
    assert all(r.status != 410 for r in h.sim.request_log)


def test_delta_off_reads_in_full_with_plain_get_every_run(
    served: Callable[..., Harness], idsync: Callable[..., CliResult]
) -> None:
    """IDSYNC_PROTIME__DELTA=off: every run reads plain GET /people and never touches a delta."""
    h = served()
    env = {**h.env(), **INCREMENTAL, "IDSYNC_PROTIME__DELTA": "off"}
    for _ in range(2):
        result = idsync("reconcile", "--json", env=env)
        assert result.code == 0, result.output
        assert '"protime_read_reason": "IDSYNC_PROTIME__DELTA=off"' in result.stdout
    assert _reads(h)
    assert all("delta" not in r.path and "delta" not in r.query for r in _reads(h))
