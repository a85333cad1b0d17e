"""A wrong settings file (issue 21): one ConfigError, one line per problem, naming sync and key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sync.config import load_deployment
from sync.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def problems(tmp_path: Path, text: str, **variables: str) -> list[str]:
    """The lines of the ConfigError loading ``text`` raises, the heading line left out."""
    path = tmp_path / "idsync.toml"
    path.write_text(text, encoding="utf-8")
    environ = {"IDSYNC_SECRETS_DIR": str(tmp_path / "no-secrets"), **variables}
    with pytest.raises(ConfigError) as info:
        load_deployment(config_path=path, environ=environ)
    assert info.value.exit_code == 2
    heading, *lines = str(info.value).splitlines()
    assert heading == f"invalid configuration ({path}):"
    return [line.strip() for line in lines]


ACME = '[syncs.acme.protime]\ntenant = "acme"\n'


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            ACME + "tenantt = 'x'\n",
            "syncs.acme.protime.tenantt: unknown key (did you mean tenant?)",
        ),
        (ACME + "[syncs.acme.shoes]\nsize = 3\n", "syncs.acme.shoes: unknown key"),
        (
            "databse_url = 'sqlite://'\n" + ACME,
            "databse_url: unknown key (did you mean database_url?)",
        ),
        ("[default.hr]\ntable = 't'\n" + ACME, "default: unknown key (did you mean defaults?)"),
        (
            ACME + "[syncs.acme.log]\nlevel = 'DEBUG'\n",
            (
                "syncs.acme.log: cannot be set here: it is shared by every sync: set it at the top of"
                " the file"
            ),
        ),
        (
            "[defaults]\ndatabase_url_file = 'x'\n" + ACME,
            (
                "defaults.database_url_file: cannot be set here: it is shared by every sync: set it"
                " at the top of the file"
            ),
        ),
        (
            "[hr]\ntable = 't'\n" + ACME,
            "hr: cannot be set here: every sync has its own: set it in [defaults] or [syncs.NAME]",
        ),
        (
            ACME + "[syncs.acme.hr]\nurl_fil = 'x'\n",
            "syncs.acme.hr.url_fil: unknown key (did you mean url_file?)",
        ),
        (
            ACME + "[syncs.acme.match]\nrules_file = 'x'\n",
            "syncs.acme.match.rules_file: unknown key: only database_url, hr.url, protime.client_secret can be read from a file",
        ),
        (
            "[syncs.Acme]\n",
            "syncs.Acme: 'Acme' is not a sync name: it must match ^[a-z0-9][a-z0-9-]{0,62}$",
        ),
        (
            "[syncs.-acme]\n",
            "syncs.-acme: '-acme' is not a sync name: it must match ^[a-z0-9][a-z0-9-]{0,62}$",
        ),
        (
            "[defaults.hr]\ntable = 't'\n",
            "syncs: the settings file has no [syncs] table: name each sync in a [syncs.NAME] table",
        ),
        ("syncs = {}\n", "syncs: no sync: name each sync in a [syncs.NAME] table"),
        ("syncs = 3\n", "syncs: must be a table"),
        ("[syncs]\nacme = 'x'\n", "syncs.acme: must be a table"),
        ("[syncs.acme]\nprotime = 'x'\n", "syncs.acme.protime: must be a table"),
        (
            "max_concurrent_runs = 0\n" + ACME,
            "max_concurrent_runs: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_wrong_shape_is_named_by_its_key(tmp_path: Path, text: str, line: str) -> None:
    """An unknown key, a key in the wrong table, a bad sync name, no syncs: one line naming it."""
    assert line in problems(tmp_path, text)


def test_every_problem_of_a_file_is_said_at_once(tmp_path: Path) -> None:
    """Problems of shape and of value, in several syncs, come in one error, one line each."""
    text = (
        "colour = 'red'\n"
        + ACME
        + "concurrency = 'many'\n"
        + '[syncs.globex.protime]\ntenant = "globex"\nenvironment = "staging"\n'
        + "[syncs.initech.reactions]\norphaned = 'delete'\ndrifted = 'ignore'\n"
    )
    assert problems(tmp_path, text) == [
        "colour: unknown key",
        (
            "syncs.acme.protime.concurrency: Input should be a valid integer, unable to parse string"
            " as an integer"
        ),
        "syncs.globex.protime.environment: Input should be 'production' or 'sandbox'",
        "syncs.initech.reactions.drifted: Input should be 'repoint' or 'report'",
    ]


def test_invalid_toml_says_line_and_column(tmp_path: Path) -> None:
    """A file that is not TOML is one error giving the line and column."""
    path = tmp_path / "idsync.toml"
    path.write_text("[syncs.acme]\nclient_secret = s3cr3t-unquoted\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_deployment(config_path=path, environ={})
    text = str(info.value)
    assert text.startswith(f"the settings file {path} is not valid TOML: ")
    assert "(at line 2, column 17)" in text
    assert "s3cr3t" not in text


def test_a_missing_file_is_named_with_its_variable(tmp_path: Path) -> None:
    """A settings file that cannot be read is an error naming it, and IDSYNC_CONFIG if it named it."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"^IDSYNC_CONFIG: cannot read the settings file .*nope"):
        load_deployment(environ={"IDSYNC_CONFIG": str(missing)})
    with pytest.raises(ConfigError, match=r"^cannot read the settings file .*nope.toml: No such"):
        load_deployment(config_path=missing, environ={})


def test_a_wrong_value_is_named_where_it_was_set(tmp_path: Path) -> None:
    """The same wrong value is named by the sync's table, the sync's variable, the plain variable
    (once for every sync) or [defaults], whichever gave it."""
    two = ACME + '[syncs.globex.protime]\ntenant = "globex"\n'
    wrong = "Input should be greater than or equal to 1"
    assert problems(tmp_path, ACME + "max_people = 0\n") == [
        f"syncs.acme.protime.max_people: {wrong}"
    ]
    assert problems(tmp_path, two, IDSYNC_SYNCS__GLOBEX__PROTIME__MAX_PEOPLE="0") == [
        f"IDSYNC_SYNCS__GLOBEX__PROTIME__MAX_PEOPLE: {wrong}"
    ]
    assert problems(tmp_path, two, IDSYNC_PROTIME__MAX_PEOPLE="0") == [
        f"IDSYNC_PROTIME__MAX_PEOPLE: {wrong}"
    ]
    assert problems(tmp_path, "[defaults.protime]\nmax_people = 0\n" + two) == [
        f"defaults.protime.max_people: {wrong}"
    ]


def test_a_model_message_names_the_keys_where_they_were_set(tmp_path: Path) -> None:
    """A rule over two keys names the sync, and each key where it was set (or would be)."""
    text = "[defaults.hr]\ntable = 't'\n" + ACME + "[syncs.acme.hr]\nquery = 'SELECT 1'\n"
    assert problems(tmp_path, text) == [
        "syncs.acme.hr: set defaults.hr.table or syncs.acme.hr.query, not both"
    ]
    text = ACME + "[syncs.acme.hr]\ntable = 't'\nwriteback_table = 'w'\n"
    assert problems(tmp_path, text) == [
        (
            "syncs.acme.hr: syncs.acme.hr.writeback_table and syncs.acme.hr.writeback_column go"
            " together"
        )
    ]


def test_a_shared_key_in_a_sync_variable_is_an_error(tmp_path: Path) -> None:
    """IDSYNC_SYNCS__<NAME>__DATABASE_URL is refused: the state database is shared."""
    assert problems(tmp_path, ACME, IDSYNC_SYNCS__ACME__DATABASE_URL="sqlite://") == [
        (
            "IDSYNC_SYNCS__ACME__DATABASE_URL: database_url is shared by every sync: set"
            " IDSYNC_DATABASE_URL or the top of the settings file"
        )
    ]


@pytest.mark.parametrize(
    ("body", "files", "line"),
    [
        (
            "client_secret_file = 'missing'\n",
            {},
            (
                "syncs.acme.protime.client_secret_file: cannot read {dir}/missing: No such file or"
                " directory"
            ),
        ),
        (
            "client_secret_file = 'empty'\n",
            {"empty": "\n"},
            "syncs.acme.protime.client_secret_file: {dir}/empty is empty",
        ),
        (
            "client_secret_file = 3\n",
            {},
            "syncs.acme.protime.client_secret_file: must be the path of a file holding the value",
        ),
        (
            "client_secret = 'inline'\nclient_secret_file = 'f'\n",
            {"f": "x"},
            (
                "syncs.acme.protime.client_secret_file: set client_secret or client_secret_file, not"
                " both"
            ),
        ),
        (
            "client_secret_file = 'f'\nclient_secret = 'inline'\n",
            {"f": "x"},
            "syncs.acme.protime.client_secret: set client_secret or client_secret_file, not both",
        ),
    ],
)
def test_a_secret_file_that_cannot_give_its_value(
    tmp_path: Path, body: str, files: dict[str, str], line: str
) -> None:
    """A ..._file key naming a missing or empty file, or set beside its key, is named."""
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert problems(tmp_path, ACME + body) == [line.format(dir=tmp_path)]


def test_a_wrong_url_from_a_file_names_the_key_not_the_password(tmp_path: Path) -> None:
    """A database URL read by url_file with a bad port is named by url_file, its password hidden."""
    (tmp_path / "hr-url").write_text("postgresql://u:pw-s3cr3t@host:abc/db\n")
    text = ACME + "[syncs.acme.hr]\nurl_file = 'hr-url'\n"
    lines = problems(tmp_path, text)
    assert lines == [
        "syncs.acme.hr.url_file: syncs.acme.hr.url_file has a port that is not a number"
    ]
    assert "pw-s3cr3t" not in "\n".join(lines)


def test_two_syncs_writing_one_reference_in_one_tenant(tmp_path: Path) -> None:
    """Two syncs with the same tenant and reference name are an error naming both."""
    text = (
        ACME
        + '[syncs.acme-again.protime]\ntenant = "ACME"\ndelta = "off"\n'
        + '[syncs.acme-other.protime]\ntenant = "acme"\nreference_name = "OTHER"\ndelta = "off"\n'
    )
    assert problems(tmp_path, text) == [
        (
            "syncs.acme and syncs.acme-again: both write the reference HRMID in the Protime tenant"
            " ACME (production), so each would overwrite the other's values: give one of them"
            " another protime.reference_name"
        )
    ]


def test_max_concurrent_runs_from_the_environment_is_named(tmp_path: Path) -> None:
    """A wrong IDSYNC_MAX_CONCURRENT_RUNS is named by its variable."""
    lines = problems(tmp_path, ACME, IDSYNC_MAX_CONCURRENT_RUNS="many")
    assert lines == [
        (
            "IDSYNC_MAX_CONCURRENT_RUNS: Input should be a valid integer, unable to parse string as"
            " an integer"
        )
    ]


def test_a_section_variable_that_is_not_json(tmp_path: Path) -> None:
    """A section given whole in a variable, as JSON that does not parse, is named by its variable."""
    assert problems(tmp_path, ACME, IDSYNC_SYNCS__ACME__HR="{bad") == [
        "IDSYNC_SYNCS__ACME__HR: is not valid JSON (a section given whole is a JSON object)"
    ]


def test_two_syncs_reading_one_tenants_people_delta(tmp_path: Path) -> None:
    """A tenant has one people delta: two syncs of it that both read it are an error naming
    both and saying to turn it off in all but one."""
    text = ACME + '[syncs.acme-payroll.protime]\ntenant = "acme"\nreference_name = "PAYROLL"\n'
    (line,) = problems(tmp_path, text)
    assert line.startswith("syncs.acme, syncs.acme-payroll: all read the people delta")
    assert 'protime.delta = "off"' in line
