"""Issue 22 over a real socket: hostile answers from the trial end a run in a defined way."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from structlog.testing import capture_logs

from e2e.harness import HRRow, row_for, sim_config
from sync.reconcile import RunStatus, run
from sync.simulator import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from e2e.harness import Harness
    from sync.simulator import Simulator

COUNT = 30
PAGE = 100


def _everyone(sim: Simulator) -> list[HRRow]:
    return [row_for(p, f"E{i:03d}") for i, p in enumerate(sim.world.people_list()[:COUNT])]


def test_people_whose_ids_cannot_be_stored_are_skipped_and_reported(
    make_harness: Callable[..., Harness],
) -> None:
    """Persons with id 2**63 or 10**30 are skipped with a warning and a count, never fatal."""
    h = make_harness(config=sim_config(people=COUNT, page_size=10), rows=_everyone)
    for n, bad in enumerate((2**63, 10**30)):
        h.sim.world.add_person(id=bad, first_name="Big", last_name=f"Id{n}")
    with contextlib.ExitStack() as stack:
        h.base_url = stack.enter_context(serve_in_thread(h.sim))
        for _ in range(2):  # the second run reads the snapshot the first one stored
            client = h.client()
            with capture_logs() as logs:
                result = run(settings=h.settings, protime=client)
            assert result.status is RunStatus.SUCCEEDED, result.message
            assert result.protime_count == COUNT
            assert client.stats.people_skipped == 2
            warnings = [e for e in logs if e["event"] == "protime.people_skipped"]
            assert sum(e["count"] for e in warnings) == 2
            assert all(e["page"] == 4 for e in warnings)  # both on the last page
    assert len(h.references()) == COUNT


class _EndlessPeople(BaseHTTPRequestHandler):
    """A hostile Protime: any POST is a token; every people page holds 100 new people and a
    nextLink to the next one, for ever."""

    gets: ClassVar[list[int]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer({"access_token": "t" * 20, "expires_in": 3600, "token_type": "Bearer"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        page = int(parse_qs(url.query).get("page", ["0"])[0])
        self.gets.append(page)
        first = 10**6 + page * PAGE
        people = [
            {"id": first + i, "firstName": "New", "lastName": f"P{first + i}"} for i in range(PAGE)
        ]
        self._answer({"value": people, "nextLink": f"{url.path}?page={page + 1}"})


@contextlib.contextmanager
def _endless() -> Iterator[str]:
    _EndlessPeople.gets = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessPeople)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_endless_pages_on_a_first_read_stop_at_max_people_and_block(
    make_harness: Callable[..., Harness],
) -> None:
    """Without a good run, a read of endless new people stops past IDSYNC_PROTIME__MAX_PEOPLE, blocked."""
    h = make_harness(config=sim_config(people=COUNT), rows=_everyone)
    with _endless() as base:
        h.base_url = base
        result = run(
            settings=h.settings.model_copy(
                update={"protime": h.settings.protime.model_copy(update={"max_people": 1000})}
            ),
            protime=h.client(),
        )
    assert result.status is RunStatus.BLOCKED, result.message
    assert "IDSYNC_PROTIME__MAX_PEOPLE" in result.message
    assert len(_EndlessPeople.gets) == 11  # 1,100 people read: past 1,000, and no further
    with h.store() as store:
        assert store.runs.runs(limit=1)[0].status == "blocked"


def test_endless_pages_after_a_good_run_stop_at_the_growth_ratio_and_block(
    make_harness: Callable[..., Harness],
) -> None:
    """After a good run, endless new people stop past MAX_GROWTH_RATIO x its count; the next run converges."""
    h = make_harness(config=sim_config(people=COUNT), rows=_everyone)
    with contextlib.ExitStack() as stack:
        served = stack.enter_context(serve_in_thread(h.sim))
        h.base_url = served
        assert h.run().status is RunStatus.SUCCEEDED
        with _endless() as base:
            h.base_url = base
            result = h.run()
        assert result.status is RunStatus.BLOCKED, result.message
        assert "IDSYNC_SAFETY__MAX_GROWTH_RATIO" in result.message
        # 1.5 x 30 + 1,000 = 1,045: stopped on the page that passed it, the 11th.
        assert "passed 1045" in result.message
        assert len(_EndlessPeople.gets) == 11
        h.base_url = served  # Protime is sane again: the lock is free, the run converges
        again = h.run()
    assert again.status is RunStatus.SUCCEEDED, again.message
    assert len(h.references()) == COUNT
