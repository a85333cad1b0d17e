"""The bad HR row corpus of tests/hr in a real run: every bad row ends `invalid` with its reason,
and the good rows of the same table, odd as some of them are, are written to Protime."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e.harness import HRRow, sim_config
from sync.domain import Situation
from sync.reconcile import RunStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from e2e.harness import Harness
    from sync.simulator import Simulator

_ROWS = re.compile(r"rows? (\d+(?:, \d+)*):")
_CORPUS_FILE = Path(__file__).parents[1] / "hr" / "test_source.py"
# Types a SQL column may hand over besides text: they cannot be a reference value.
_OTHER_TYPES: list[tuple[object, str]] = [
    (1.5, "not a string/integer (float)"),
    (b"E77", "not a string/integer (bytes)"),
]


def _hr_corpus() -> ModuleType:
    """tests/hr/test_source.py, loaded under a name of its own (the corpus lives there)."""
    name = "e2e_hr_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _CORPUS_FILE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_bad_rows_end_invalid_while_good_rows_sync_in_the_same_run(
    make_harness: Callable[..., Harness],
) -> None:
    """30+ bad rows (empty, white space, duplicates, each forbidden character, too long, control
    and non-string values, SQL-looking, unicode) are invalid with their reason; good rows link."""
    corpus: list[dict[str, Any]] = _hr_corpus()._corpus("sqlite")
    corpus += [{"employee_id": raw, "expected": why} for raw, why in _OTHER_TYPES]
    bad = [r for r in corpus if r["expected"] not in (None, "out")]
    good = [r for r in corpus if r["expected"] is None]
    assert len(bad) >= 30

    def rows(sim: Simulator) -> list[HRRow]:
        people = iter(sim.world.people_list())
        out = []
        for row in corpus:
            # Good rows match a person each by employee number; bad rows would match one too
            # (they must still not be written).
            person = next(people)
            active = 0 if row["expected"] == "out" else 1
            out.append(HRRow(row["employee_id"], person.employee_number, active=active))
        return out

    h = make_harness(rows=rows, config=sim_config(people=len(corpus) + 5))
    result = h.run()

    assert result.status is RunStatus.SUCCEEDED, result.message
    assert result.plan is not None
    by_row: dict[int, list[str]] = {}
    for c in result.plan.classifications:
        if c.situation is Situation.INVALID:
            # Reasons start with the rows they cover: "row 7: ..." or "rows 39, 40: ..."
            found = _ROWS.match(c.reason)
            assert found is not None, c.reason
            for number in found.group(1).split(", "):
                by_row.setdefault(int(number), []).append(c.reason)
    for number, row in enumerate(corpus, start=1):
        if row in bad:
            assert any(row["expected"] in why for why in by_row.get(number, [])), (row, by_row)
        else:
            assert number not in by_row, (row, by_row[number])
    people = h.sim.world.people_list()
    expected = {
        row["employee_id"]: people[number].id
        for number, row in enumerate(corpus)
        if row["expected"] is None
    }
    assert h.references() == expected
    assert len(expected) == len(good)
    assert result.actions_by_outcome == {"write:succeeded": len(good)}

    again = h.run()
    assert again.plan is not None
    assert again.plan.actions == ()
    assert again.counts_by_situation["invalid"] == result.counts_by_situation["invalid"]
