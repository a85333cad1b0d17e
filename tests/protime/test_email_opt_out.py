"""E-mail addresses are read only when a matching rule needs them (they are most of a person's bytes)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from e2e.harness import Harness, HRRow, migrate, sim_config, write_hr
from sync.config import MatchSettings, ProtimeSettings
from sync.domain import Person, Rule
from sync.protime import MalformedAnswerError, ProtimeClient
from sync.protime._parse import parse_people_page
from sync.reconcile import run
from sync.simulator import ClientSpec, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "email-opt-out-secret"


def _people(*, read_email: bool) -> list[Person]:
    sim = Simulator(
        SimulatorConfig(tenant="acme", people=12, seed=3, clients=(ClientSpec("idsync", SECRET),))
    )
    settings = ProtimeSettings(
        base_url=sim.base_url,
        tenant="acme",
        token_url=sim.token_url,
        client_id="idsync",
        client_secret=SECRET,
        rate_limit_per_second=0,
    )

    async def read() -> list[Person]:
        async with ProtimeClient(settings, transport=sim.transport(), read_email=read_email) as c:
            return await c.read_people()

    return asyncio.run(read())


def test_the_client_keeps_emails_only_when_asked() -> None:
    """read_email=False gives the same persons with no e-mail; the default keeps every e-mail."""
    with_email, without = _people(read_email=True), _people(read_email=False)
    assert all(p.email for p in with_email)
    assert all(p.email is None for p in without)
    assert [(p.id, p.employee_number, p.reference) for p in without] == [
        (p.id, p.employee_number, p.reference) for p in with_email
    ]


def test_an_email_that_is_not_kept_is_still_checked() -> None:
    """A wrong-typed e-mail makes the page malformed whether or not the address is kept."""
    page = {"value": [{"id": 7, "email": 12}]}
    with pytest.raises(MalformedAnswerError, match="'email' is int"):
        parse_people_page(page, reference_name="HRMID", with_email=False)


def test_a_run_with_the_email_rule_matches_by_email(tmp_path: Path) -> None:
    """With IDSYNC_MATCH__RULES=email every employee is found by address and written."""
    sim = Simulator(sim_config(people=15))
    people = sim.world.people_list()
    hr_path = tmp_path / "hr.db"
    write_hr(hr_path, [HRRow(f"H{i}", email=p.email) for i, p in enumerate(people)])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(state_url)
    harness = Harness(sim=sim, hr_path=hr_path, state_url=state_url)
    settings = harness.settings.model_copy(update={"match": MatchSettings(rules=(Rule.EMAIL,))})
    result = run(settings=settings, protime=harness.client(settings))
    assert result.actions_by_outcome == {"write:succeeded": len(people)}
    assert harness.references() == {f"H{i}": p.id for i, p in enumerate(people)}
