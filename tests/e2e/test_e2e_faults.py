"""End to end under Protime's bad days: rate limits, 5xx, drops, empty pages, expired tokens,
409 vs replace, missing scopes. Each run ends with the status it should, and the world converges."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import pytest

from e2e.harness import CLIENT_ID, CLIENT_SECRET, HRRow, hook, is_put, row_for, sim_config
from sync.reconcile import RunStatus
from sync.simulator import PEOPLE_READ, ClientSpec, serve_in_thread
from sync.state import RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 40
WRITE_SCOPE = "connector-protimeapi-external-references.write"


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def _expected(h: Harness) -> dict[str, int]:
    return {f"E{i:03d}": p.id for i, p in enumerate(h.sim.world.people_list()[:COUNT])}


def _assert_converged(h: Harness) -> None:
    assert h.references() == _expected(h)
    writes = h.writes()
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert again.plan is not None
    assert again.plan.actions == ()
    assert h.writes() == writes
    assert h.pending_events() == 0


def test_a_429_storm_is_waited_out(make_harness: Callable[..., Harness]) -> None:
    """Protime's rate limit refuses many calls; honouring Retry-After, every write still lands."""
    config = sim_config(
        people=COUNT, rate_limit_per_second=150, rate_limit_burst=2, retry_after_style="fractional"
    )
    h = make_harness(config=config, rows=_everyone, protime={"retry_attempts": 30})
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert h.sim.counters.count(status=429) > 0
    assert result.api_requests.get("put_reference:429", 0) > 0
    assert result.retries >= h.sim.counters.count(status=429)
    assert result.actions_by_outcome == {"write:succeeded": COUNT}
    _assert_converged(h)


@pytest.mark.parametrize("over", ["in-process", pytest.param("http", marks=pytest.mark.slow)])
def test_5xx_and_dropped_connections_are_retried(
    make_harness: Callable[..., Harness], over: str
) -> None:
    """500s, 503s and connections dropped after the answer was sent (in-process, or a real
    socket cut by the server) end in a fully linked world."""
    config = sim_config(
        people=COUNT,
        fault_rate_500=0.15,
        fault_rate_503=0.15,
        fault_drop_rate=0.1,
        retry_after_style="fractional",
        retry_after_seconds=0.005,
    )
    h = make_harness(config=config, rows=_everyone, protime={"retry_attempts": 25})
    with contextlib.ExitStack() as stack:
        if over == "http":
            h.base_url = stack.enter_context(serve_in_thread(h.sim))
        result = h.run()
        assert result.status is RunStatus.SUCCEEDED, result.message
        for status in (500, 503, 0):  # 0: the simulator dropped the connection
            assert h.sim.counters.count(status=status) > 0, status
        assert result.api_requests.get("put_reference:error", 0) > 0  # drops seen as no answer
        h.sim.set_faults(fault_rate_500=0.0, fault_rate_503=0.0, fault_drop_rate=0.0)
        _assert_converged(h)


def test_writes_that_run_out_of_retries_end_partial_and_the_next_run_converges(
    make_harness: Callable[..., Harness],
) -> None:
    """A 503 storm during the writes leaves records retriable (exit 4), never failed; a rerun heals."""

    def storm_on_first_put(request: httpx.Request) -> None:
        if is_put(request) and h.sim.faults.fault_rate_503 == 0:
            h.sim.set_faults(fault_rate_503=0.8, retry_after_style="fractional")

    h = make_harness(
        config=sim_config(people=COUNT, retry_after_seconds=0.005),
        rows=_everyone,
        protime={"retry_attempts": 2},
        wrap_transport=hook(storm_on_first_put),
    )
    result = h.run()
    assert result.status is RunStatus.PARTIAL
    assert result.exit_code == 4
    assert result.actions_by_outcome.get("write:retriable", 0) > 0
    with h.store() as store:
        rows = list(store.map.iter_mappings())
    assert "failed" not in {r.situation for r in rows}
    assert any(r.last_error and "503" in r.last_error for r in rows)

    h.sim.set_faults(fault_rate_503=0.0)
    h.wrap_transport = None
    healed = h.run()
    assert healed.status is RunStatus.SUCCEEDED
    assert healed.actions_by_outcome == {
        "write:succeeded": result.actions_by_outcome["write:retriable"]
    }
    _assert_converged(h)


def test_empty_pages_with_a_next_link_are_not_the_end(make_harness: Callable[..., Harness]) -> None:
    """People pages that come back empty but carry a nextLink are followed to the real end."""
    config = sim_config(people=COUNT, page_size=3, empty_page_rate=0.5)
    h = make_harness(config=config, rows=_everyone)
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert result.protime_count == COUNT
    assert h.sim.counters.count("people.delta", 200) > COUNT // 3 + 1  # empty pages were read
    h.sim.set_faults(empty_page_rate=0.0)
    _assert_converged(h)


def test_tokens_expiring_mid_run_are_renewed_once(make_harness: Callable[..., Harness]) -> None:
    """Every token is revoked after ten writes: one new token, the refused calls retried, no loss."""
    puts: list[str] = []

    def revoke_after_ten(request: httpx.Request) -> None:
        if is_put(request):
            puts.append(request.url.path)
            if len(puts) == 10:
                h.sim.expire_tokens()

    h = make_harness(
        config=sim_config(people=COUNT), rows=_everyone, wrap_transport=hook(revoke_after_ten)
    )
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert h.sim.counters.count("references.put", 401) > 0
    assert h.sim.counters.count("token", 200) == 2
    assert result.actions_by_outcome == {"write:succeeded": COUNT}
    _assert_converged(h)


def test_short_lived_tokens_are_refreshed_before_they_expire(
    make_harness: Callable[..., Harness],
) -> None:
    """With a one-second token and slow answers the client renews it and the run succeeds."""
    # One call at a time, 20 ms each: the writes take longer than the token's half-life.
    config = sim_config(people=COUNT, token_ttl_seconds=1, latency_ms=20)
    h = make_harness(config=config, rows=_everyone, protime={"concurrency": 1})
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert h.sim.counters.count("token", 200) >= 2
    h.sim.set_faults(latency_ms=0.0)
    _assert_converged(h)


@pytest.mark.parametrize("policy", ["conflict", "replace"])
def test_one_value_per_person_conflict_and_replace(
    make_harness: Callable[..., Harness], policy: str
) -> None:
    """A drifted person is re-pointed under both §7 policies; a value added behind our back is a
    409 (retriable, fixed next run) under `conflict` and simply replaced under `replace`."""
    people: list[int] = []

    def rows(sim: Simulator) -> list[HRRow]:
        p = sim.world.people_list()
        people.extend(x.id for x in p)
        sim.world.set_reference("OLD-0", p[0].id)  # stale: HR has no OLD-0 any more
        return _everyone(sim)

    def someone_writes_behind_our_back(request: httpx.Request) -> None:
        if is_put(request, "E005") and "SOMEONE" not in h.sim.world.references():
            h.sim.world.set_reference("SOMEONE", people[5])

    h = make_harness(
        config=sim_config(people=COUNT, one_value_per_person=policy),
        rows=rows,
        wrap_transport=hook(someone_writes_behind_our_back),
    )
    result = h.run()
    assert result.counts_by_situation["drifted"] == 1
    assert "OLD-0" not in h.references()
    if policy == "conflict":
        assert result.status is RunStatus.PARTIAL
        assert result.actions_by_outcome["write:retriable"] == 1
        assert h.sim.counters.count("references.put", 409) == 1
        assert h.references()["SOMEONE"] == people[5]
        h.wrap_transport = None
        second = h.run()  # SOMEONE belongs to no HR employee: deleted, then E005 written
        assert second.status is RunStatus.SUCCEEDED, second.message
        assert second.actions_by_outcome == {"delete:succeeded": 1, "write:succeeded": 1}
    else:
        assert result.status is RunStatus.SUCCEEDED, result.message
        assert h.sim.counters.count("references.put", 409) == 0
    h.wrap_transport = None
    _assert_converged(h)


@pytest.mark.parametrize("scope_status", [403, 401])
def test_a_missing_write_scope_fails_the_run_once_not_every_record(
    make_harness: Callable[..., Harness], scope_status: int
) -> None:
    """Without the write scope (403, or 401 on some tenants) the run stops FAILED with the scope
    named, after at most one round of calls; granted the scope, the next run converges."""
    config = sim_config(people=COUNT, scopes={PEOPLE_READ}, scope_error_status=scope_status)
    h = make_harness(
        config=config, rows=_everyone, protime={"scopes": PEOPLE_READ, "concurrency": 4}
    )
    result = h.run()
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 1
    assert WRITE_SCOPE in result.message
    assert CLIENT_SECRET not in result.message
    # At most one call per worker, each retried once with a fresh token on 401.
    assert h.sim.counters.count("references.put") <= 2 * 4
    assert result.actions_by_outcome.get("write:skipped", 0) >= COUNT - 4
    with h.store() as store:
        assert "failed" not in {r.situation for r in store.map.iter_mappings()}
        run_row = store.runs.run(result.run_id or "")
    assert run_row is not None
    assert run_row.status == "failed"
    assert run_row.error is not None
    assert WRITE_SCOPE in run_row.error

    h.sim.config = dataclasses.replace(
        h.sim.config, clients=(ClientSpec(CLIENT_ID, CLIENT_SECRET),)
    )
    h.protime = {}
    healed = h.run()
    assert healed.status is RunStatus.SUCCEEDED, healed.message
    _assert_converged(h)


def test_a_scope_the_token_endpoint_refuses_fails_before_any_write(
    make_harness: Callable[..., Harness],
) -> None:
    """Asking for a scope the client was never granted is refused at the token: FAILED, no call."""
    h = make_harness(config=sim_config(people=COUNT, scopes={PEOPLE_READ}), rows=_everyone)
    result = h.run()
    assert result.status is RunStatus.FAILED
    assert "IDSYNC_PROTIME__CLIENT_ID" in result.message
    assert h.sim.counters.count("people.delta") == 0
    assert h.writes() == 0


def test_wrong_client_secret_fails_without_printing_it(
    make_harness: Callable[..., Harness],
) -> None:
    """A refused client secret fails the run (exit 1); the message never carries the secret."""
    wrong = "not-the-right-secret-123"
    h = make_harness(rows=_everyone, protime={"client_secret": wrong})
    result = h.run()
    assert result.status is RunStatus.FAILED
    assert "IDSYNC_PROTIME__CLIENT_SECRET" in result.message
    assert wrong not in result.message
    assert h.writes() == 0


def test_auto_rate_learns_from_429s_and_the_next_run_starts_there(
    make_harness: Callable[..., Harness],
) -> None:
    """With `auto`, a run that meets Protime's limit stores a lower rate; the next run starts at it."""
    config = sim_config(
        people=COUNT, rate_limit_per_second=20, rate_limit_burst=2, retry_after_style="fractional"
    )
    h = make_harness(
        config=config,
        rows=_everyone,
        protime={"rate_limit_per_second": "auto", "retry_attempts": 30},
    )
    with h.store() as store:
        # A previous run learned 100/s: far above what this tenant now allows.
        earlier = store.runs.start_run(trigger="cli", dry_run=False, forced=False)
        store.runs.rate_memory(earlier).remember(100)
        store.runs.finish_run(run_id=earlier, status="succeeded", summary=RunSummary())
    first = h.run()
    assert first.status is RunStatus.SUCCEEDED, first.message
    assert first.api_requests.get("put_reference:429", 0) > 0
    assert first.rate_per_second is not None
    assert first.rate_per_second < 100
    with h.store() as store:
        assert store.runs.learned_rate() == first.rate_per_second
    # The bucket no longer refuses: the second run reads one page, never waits for a slot, so
    # it neither raises nor cuts the rate it started from.
    h.sim.set_faults(rate_limit_per_second=None)
    second = h.run()
    assert second.status is RunStatus.SUCCEEDED, second.message
    assert second.rate_per_second == pytest.approx(first.rate_per_second)


def test_a_fixed_rate_is_not_stored_as_learned(make_harness: Callable[..., Harness]) -> None:
    """A number in IDSYNC_PROTIME__RATE_LIMIT_PER_SECOND paces the run but teaches nothing."""
    h = make_harness(
        config=sim_config(people=COUNT), rows=_everyone, protime={"rate_limit_per_second": 500}
    )
    result = h.run()
    assert result.status is RunStatus.SUCCEEDED, result.message
    assert result.rate_per_second == 500
    with h.store() as store:
        assert store.runs.learned_rate() is None
