"""A stop (Ctrl-C, SIGTERM) while ``idsync reconcile --full`` reads Protime over HTTP cuts the read
off: the run ends ``interrupted`` (exit 1) a page or two later, keeps nothing of the partial read,
and the next run reads again and succeeds (issue 22, point 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import IO, TYPE_CHECKING

import pytest

from e2e.harness import HRRow, hook, row_for, sim_config, wait_until
from e2e.test_e2e_crash import idsync_command
from sync.reconcile import RunStatus
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from e2e.harness import Harness
    from sync.reconcile._progress import ProgressSnapshot
    from sync.simulator import Simulator

PEOPLE = 2_000
PAGE_SIZE = 50  # 40 pages
LATENCY_MS = 150  # per page: the full read takes some 6 s
# Pages the simulator may still answer once the signal is sent: the one in flight (answered or
# cut off) and, at most, one the client asked for before it saw the stop (polled every 0.1 s).
PAGES_AFTER_THE_SIGNAL = 3


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:05d}") for i, p in enumerate(sim.world.people_list())]


def _pages(sim: Simulator) -> int:
    """People pages the simulator has answered (or seen cut off) so far."""
    return sum(1 for r in list(sim.request_log) if r.method == "GET" and r.path.endswith("/people"))


def _drain(stream: IO[str], lines: list[str]) -> None:
    """Append each line of ``stream`` to ``lines`` as it comes (another thread watches them)."""
    while line := stream.readline():
        lines.append(line)


def _interrupt_the_read(h: Harness, signum: signal.Signals) -> tuple[int, str, int, int]:
    """Run ``idsync reconcile --full`` over HTTP, send ``signum`` once two pages are read; return
    the exit code, stderr, and the pages answered at the signal and in all."""
    lines: list[str] = []
    with serve_in_thread(h.sim) as base_url:
        h.base_url = base_url
        proc = subprocess.Popen(
            [*idsync_command(), "reconcile", "--full"],
            env={**os.environ, **h.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        # Each pipe drained by one thread of its own (a full pipe would block the process; two
        # readers of one pipe would each miss what the other took).
        readers = [
            threading.Thread(target=_drain, args=(proc.stderr, lines)),
            threading.Thread(target=proc.stdout.read),
        ]
        for reader in readers:
            reader.start()
        try:
            wait_until(
                lambda: (
                    (any("protime.read" in line for line in lines) and _pages(h.sim) >= 2)
                    or proc.poll() is not None
                ),
                timeout=60,
                what="the Protime read to be under way",
            )
            assert proc.poll() is None, "".join(lines)[-2000:]
            at_signal = _pages(h.sim)
            proc.send_signal(signum)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            for reader in readers:
                reader.join(timeout=30)
            h.base_url = None  # the next run talks to the simulator in-process
        return proc.returncode, "".join(lines), at_signal, _pages(h.sim)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_reading_cuts_the_read_off_and_keeps_nothing(
    make_harness: Callable[..., Harness], signum: signal.Signals
) -> None:
    """A stop signal mid-read ends the run interrupted (exit 1) within a few pages, with no
    snapshot, link or map saved, and the next run reads in full and succeeds."""
    h = make_harness(
        config=sim_config(people=PEOPLE, page_size=PAGE_SIZE, latency_ms=LATENCY_MS),
        rows=_everyone,
    )
    code, stderr, at_signal, pages = _interrupt_the_read(h, signum)

    assert code == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "stopping after the calls in flight" in stderr
    assert pages <= at_signal + PAGES_AFTER_THE_SIGNAL, (at_signal, pages)
    assert pages < PEOPLE // PAGE_SIZE // 2, pages  # far from the full read
    with h.store() as store:
        (stopped,) = store.runs.runs()
        assert stopped.status == "interrupted"
        assert stopped.error is not None
        assert "stopped while reading" in stopped.error
        assert store.snapshot.people_feed() is None  # neither the partial read nor its link is kept
        assert store.snapshot.load_people() == []
        assert list(store.map.iter_mappings()) == []
    assert h.writes() == 0
    assert h.pending_events() == 0

    h.sim.set_faults(latency_ms=0.0)
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert again.protime_count == PEOPLE
    assert len(h.references()) == PEOPLE


def test_the_services_stop_event_cuts_a_later_read_off_and_keeps_the_last_snapshot(
    make_harness: Callable[..., Harness],
) -> None:
    """The stop event ``idsync serve`` sets on SIGTERM, set from another thread mid-read, ends the
    run interrupted a page later and leaves the stored snapshot and link of the last run as they
    were."""
    stop = threading.Event()
    pages: list[str] = []

    def stop_on_the_third_page(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.endswith("/people"):
            pages.append(request.url.path)
            if len(pages) == 3:
                threading.Thread(target=stop.set).start()  # as the signal watcher thread does

    h = make_harness(
        config=sim_config(people=PEOPLE, page_size=PAGE_SIZE, latency_ms=20), rows=_everyone
    )
    assert h.run().status is RunStatus.SUCCEEDED
    with h.store() as store:
        before = store.snapshot.people_feed()
    assert before is not None

    h.wrap_transport = hook(stop_on_the_third_page)
    result = h.run(stop=stop, full=True)
    assert result.status is RunStatus.INTERRUPTED, result.message
    assert result.exit_code == 1
    assert "stopped while reading" in result.message
    assert len(pages) <= 3 + PAGES_AFTER_THE_SIGNAL, len(pages)
    with h.store() as store:
        assert store.snapshot.people_feed() == before  # the partial read replaced nothing
        assert len(store.snapshot.load_people()) == PEOPLE

    h.wrap_transport = None
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert again.protime_count == PEOPLE


def test_a_stop_after_every_action_is_done_still_ends_the_run_interrupted(
    make_harness: Callable[..., Harness],
) -> None:
    """A stop that comes while the run saves its map, with nothing left to write, ends the run
    ``interrupted`` (a stop request ends a run so in every phase); the next run succeeds with
    nothing to do."""
    stop = threading.Event()

    def stop_while_saving(snapshot: ProgressSnapshot) -> None:
        if snapshot.phase == "saving":
            stop.set()

    h = make_harness(config=sim_config(people=50), rows=_everyone)
    for i, person in enumerate(h.sim.world.people_list()):  # every reference already there
        h.sim.world.set_reference(f"E{i:05d}", person.id)
    result = h.run(stop=stop, on_progress=stop_while_saving)
    assert result.status is RunStatus.INTERRUPTED, result.message
    assert result.exit_code == 1
    again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert h.writes() == 0
