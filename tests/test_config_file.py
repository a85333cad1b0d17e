"""The settings file of many syncs (issue 21): load_deployment, its precedence and its secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync.config import (
    DEFAULT_MAX_CONCURRENT_RUNS,
    Deployment,
    Settings,
    load_deployment,
    load_settings,
    sync_variable_prefix,
)
from sync.domain import Rule
from sync.errors import UsageError

THREE_SYNCS = """
database_url = "sqlite:///state.db"
max_concurrent_runs = 2

[http]
port = 9100

[log]
level = "DEBUG"

[defaults]
run_deadline_seconds = 7200

[defaults.protime]
client_id = "idsync"
base_url = "https://acme.myprotime.eu"

[syncs.acme.protime]
tenant = "acme"
client_secret_file = "secrets/acme"

[syncs.acme.hr]
table = "employees"

[syncs.acme-payroll.protime]
tenant = "acme"
reference_name = "PAYROLL"
delta = "off"
client_secret_file = "secrets/acme"

[syncs.acme-payroll.hr]
query = "SELECT * FROM payroll;"

[syncs.globex]
lock_timeout_seconds = 30

[syncs.globex.protime]
tenant = "globex"
base_url = "https://globex.myprotime.eu"
client_secret = "globex-inline-secret"

[syncs.globex.hr]
url = "sqlite:///globex-hr.db"
table = "employees"

[syncs.globex.match]
rules = ["email", "reference"]
"""


def settings_file(directory: Path, text: str, name: str = "idsync.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment of ``variables`` whose secrets directory is an empty folder of the test's."""
    secrets = tmp_path / "no-secrets"
    secrets.mkdir(exist_ok=True)
    return {"IDSYNC_SECRETS_DIR": str(secrets), **variables}


def load(tmp_path: Path, text: str, **variables: str) -> Deployment:
    return load_deployment(
        config_path=settings_file(tmp_path, text), environ=env(tmp_path, **variables)
    )


def one_sync(body: str) -> str:
    return f'[syncs.acme.protime]\ntenant = "acme"\n{body}'


@pytest.fixture
def clean_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A process environment without IDSYNC_ variables, in a folder without `.env`."""
    for name in list(os.environ):
        if name.upper().startswith("IDSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_without_a_file_the_environment_is_one_default_sync(
    clean_process: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a file, the one sync `default` has exactly the settings load_settings() gives."""
    variables = env(
        tmp_path,
        IDSYNC_PROTIME__TENANT="acme",
        IDSYNC_PROTIME__CLIENT_SECRET="s3cr3t",
        IDSYNC_HR__TABLE="employees",
        IDSYNC_MATCH__RULES="email,reference",
        IDSYNC_HTTP__PORT="9999",
    )
    (tmp_path / "no-secrets" / "IDSYNC_PROTIME__CLIENT_ID").write_text("from-a-file\n")
    for name, value in variables.items():
        clean_process.setenv(name, value)
    expected = load_settings()

    for deployment in (load_deployment(environ=variables), load_deployment()):
        assert deployment.names == ("default",)
        assert deployment.syncs["default"] == expected
        assert deployment.settings_for(None) == expected
        assert deployment.source is None
        assert deployment.max_concurrent_runs == DEFAULT_MAX_CONCURRENT_RUNS
    assert expected.protime.client_id == "from-a-file"


def test_without_a_file_max_concurrent_runs_comes_from_the_environment(tmp_path: Path) -> None:
    """IDSYNC_MAX_CONCURRENT_RUNS sets the deployment's bound without a file too."""
    deployment = load_deployment(environ=env(tmp_path, IDSYNC_MAX_CONCURRENT_RUNS="7"))
    assert deployment.max_concurrent_runs == 7


def test_a_file_of_three_syncs(tmp_path: Path) -> None:
    """Three syncs (two tenants, a second reference name in one) load in file order, each a full
    Settings sharing the state database, http and log, with the defaults under its own table."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme").write_text("acme-secret\n")
    deployment = load(tmp_path, THREE_SYNCS)

    assert deployment.names == ("acme", "acme-payroll", "globex")
    assert deployment.source == (tmp_path / "idsync.toml").absolute()
    assert deployment.max_concurrent_runs == 2
    acme, payroll, globex = (deployment.settings_for(n) for n in deployment.names)
    assert [s.protime.tenant for s in (acme, payroll, globex)] == ["acme", "acme", "globex"]
    assert [s.protime.reference_name for s in (acme, payroll, globex)] == [
        "HRMID",
        "PAYROLL",
        "HRMID",
    ]
    for settings in (acme, payroll, globex):
        assert isinstance(settings, Settings)
        assert settings.state_url == "sqlite:///state.db"
        assert settings.http.port == 9100
        assert settings.log.level == "DEBUG"
        assert settings.protime.client_id == "idsync"
        assert settings.run_deadline_seconds == 7200
    assert acme.protime.base_url == "https://acme.myprotime.eu"
    assert globex.protime.base_url == "https://globex.myprotime.eu"
    assert acme.hr.table == "employees"
    assert payroll.hr.query == "SELECT * FROM payroll"
    assert acme.hr_url == "sqlite:///state.db"
    assert globex.hr_url == "sqlite:///globex-hr.db"
    assert globex.lock_timeout_seconds == 30
    assert acme.lock_timeout_seconds == 0
    assert globex.match.rules == (Rule.EMAIL, Rule.REFERENCE)
    assert acme.match.rules == Settings.model_fields["match"].default.rules
    secrets = [s.protime.client_secret for s in (acme, payroll, globex)]
    assert [s.get_secret_value() for s in secrets if s] == [
        "acme-secret",
        "acme-secret",
        "globex-inline-secret",
    ]


LEVELS = {
    "per-sync variable": 7,
    "[syncs.acme]": 6,
    "plain variable": 5,
    "[defaults]": 4,
}


@pytest.mark.parametrize("top", [*LEVELS, "built-in"])
def test_each_level_of_precedence(tmp_path: Path, top: str) -> None:
    """A sync's value comes from its own variable, else its table, else the plain variable, else
    [defaults], else the built-in default: each level set with every level below it."""
    present = list(LEVELS)[list(LEVELS).index(top) :] if top in LEVELS else []
    text = "[defaults.protime]\nconcurrency = 4\n" if "[defaults]" in present else ""
    text += '[syncs.acme.protime]\ntenant = "acme"\n'
    text += "concurrency = 6\n" if "[syncs.acme]" in present else ""
    variables = {}
    if "plain variable" in present:
        variables["IDSYNC_PROTIME__CONCURRENCY"] = "5"
    if "per-sync variable" in present:
        variables["IDSYNC_SYNCS__ACME__PROTIME__CONCURRENCY"] = "7"

    settings = load(tmp_path, text, **variables).settings_for("acme")

    assert settings.protime.concurrency == LEVELS.get(top, 8)


def test_a_plain_variable_is_a_default_for_every_sync(tmp_path: Path) -> None:
    """A plain IDSYNC_ variable applies to every sync that does not set the key itself."""
    text = one_sync('[syncs.globex.protime]\ntenant = "globex"\nmax_people = 10\n')
    deployment = load(tmp_path, text, IDSYNC_PROTIME__MAX_PEOPLE="99")
    assert deployment.settings_for("acme").protime.max_people == 99
    assert deployment.settings_for("globex").protime.max_people == 10


def test_shared_keys_take_the_variable_over_the_file(tmp_path: Path) -> None:
    """The shared keys and max_concurrent_runs: the IDSYNC_ variable wins over the file's top."""
    text = (
        'database_url = "sqlite:///file.db"\nstate_timeout_seconds = 20\nmax_concurrent_runs = 2\n'
        "[http]\nport = 9100\nhost = '127.0.0.1'\n" + one_sync("")
    )
    deployment = load(
        tmp_path,
        text,
        IDSYNC_DATABASE_URL="sqlite:///env.db",
        IDSYNC_HTTP__PORT="9200",
        IDSYNC_MAX_CONCURRENT_RUNS="3",
    )
    settings = deployment.settings_for(None)
    assert settings.state_url == "sqlite:///env.db"
    assert settings.state_timeout_seconds == 20
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 9200)
    assert deployment.max_concurrent_runs == 3


def test_a_sync_name_with_dashes_has_underscores_in_its_variables(tmp_path: Path) -> None:
    """The variables of `acme-eu` are IDSYNC_SYNCS__ACME_EU__..., upper or lower case."""
    assert sync_variable_prefix("acme-eu") == "IDSYNC_SYNCS__ACME_EU__"
    text = '[syncs.acme-eu.protime]\ntenant = "acme"\n'
    deployment = load(tmp_path, text, idsync_syncs__acme_eu__protime__reference_name="EU")
    assert deployment.settings_for("acme-eu").protime.reference_name == "EU"


def test_the_config_variable_names_the_file_and_the_argument_wins(tmp_path: Path) -> None:
    """IDSYNC_CONFIG names the settings file; config_path, when given, is read instead."""
    named = settings_file(tmp_path, "[syncs.from-variable]\n", "a.toml")
    given = settings_file(tmp_path, "[syncs.from-argument]\n", "b.toml")
    variables = env(tmp_path, IDSYNC_CONFIG=str(named))
    assert load_deployment(environ=variables).names == ("from-variable",)
    assert load_deployment(config_path=given, environ=variables).names == ("from-argument",)


def test_unknown_variables_are_ignored_with_a_file(tmp_path: Path) -> None:
    """As without a file, variables that are no setting (nor of a sync the file names) are ignored."""
    deployment = load(
        tmp_path,
        one_sync(""),
        IDSYNC_NO_SUCH_THING="x",
        IDSYNC_SYNCS__GLOBEX__PROTIME__TENANT="globex",
    )
    assert deployment.names == ("acme",)


def test_two_syncs_may_share_a_tenant_or_an_hr_source(tmp_path: Path) -> None:
    """One tenant with two reference names, and one HR table read by two tenants, are allowed."""
    text = (
        "[defaults.hr]\ntable = 'employees'\n"
        '[syncs.a.protime]\ntenant = "acme"\n'
        '[syncs.b.protime]\ntenant = "acme"\nreference_name = "OTHER"\ndelta = "off"\n'
        '[syncs.c.protime]\ntenant = "globex"\n'
        '[syncs.d.protime]\ntenant = "acme"\nenvironment = "sandbox"\n'
    )
    assert load(tmp_path, text).names == ("a", "b", "c", "d")


# --- secrets


def test_a_secret_file_key_reads_the_value_less_one_line_break(tmp_path: Path) -> None:
    """client_secret_file, hr.url_file and database_url_file read their value from a file
    relative to the settings file's folder, less one trailing line break."""
    folder = tmp_path / "conf"
    (folder / "s").mkdir(parents=True)
    (folder / "s" / "secret").write_text("top secret \n\n")
    (folder / "s" / "hr").write_text("sqlite:///hr.db\r\n")
    (folder / "s" / "state").write_text("sqlite:///state.db")
    text = 'database_url_file = "s/state"\n' + one_sync(
        'client_secret_file = "s/secret"\n[syncs.acme.hr]\nurl_file = "s/hr"\n'
    )
    path = settings_file(folder, text)
    settings = load_deployment(config_path=path, environ=env(tmp_path)).settings_for("acme")
    assert settings.protime.client_secret is not None
    assert settings.protime.client_secret.get_secret_value() == "top secret \n"
    assert settings.hr_url == "sqlite:///hr.db"
    assert settings.state_url == "sqlite:///state.db"


def test_the_secrets_directory_holds_per_sync_and_plain_variables(tmp_path: Path) -> None:
    """A file named like a sync's variable sets that sync; one named like the plain variable,
    every other sync; the environment wins over both, and the sync's file over its table."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "IDSYNC_SYNCS__ACME__PROTIME__CLIENT_SECRET").write_text("acme-from-dir\n")
    (secrets / "IDSYNC_SYNCS__ACME__PROTIME__CLIENT_ID").write_text("acme-id-from-dir")
    (secrets / "IDSYNC_PROTIME__CLIENT_SECRET").write_text("shared-from-dir")
    text = (
        'secrets_dir = "secrets"\n'
        + one_sync('client_id = "acme-id-from-table"\n')
        + '[syncs.globex.protime]\ntenant = "globex"\n'
        + '[syncs.initech.protime]\ntenant = "initech"\n'
    )
    deployment = load_deployment(
        config_path=settings_file(tmp_path, text),
        environ={"IDSYNC_SYNCS__INITECH__PROTIME__CLIENT_SECRET": "initech-from-env"},
    )

    def secret(name: str) -> str:
        value = deployment.settings_for(name).protime.client_secret
        assert value is not None
        return value.get_secret_value()

    assert secret("acme") == "acme-from-dir"
    assert deployment.settings_for("acme").protime.client_id == "acme-id-from-dir"
    assert secret("globex") == "shared-from-dir"
    assert secret("initech") == "initech-from-env"


def test_the_secrets_dir_variable_wins_over_the_file(tmp_path: Path) -> None:
    """IDSYNC_SECRETS_DIR names the secrets directory even when the file names another."""
    (tmp_path / "env-dir").mkdir()
    (tmp_path / "env-dir" / "IDSYNC_PROTIME__CLIENT_ID").write_text("from-env-dir")
    text = 'secrets_dir = "file-dir"\n' + one_sync("")
    deployment = load(tmp_path, text, IDSYNC_SECRETS_DIR=str(tmp_path / "env-dir"))
    assert deployment.settings_for("acme").protime.client_id == "from-env-dir"


def test_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    """A deployment's repr masks every secret, as Settings does."""
    (tmp_path / "secret").write_text("file-secret-value")
    text = (
        'database_url = "postgresql://u:db-password@host/db"\n'
        + one_sync('client_secret_file = "secret"\n')
        + '[syncs.b.protime]\ntenant = "b"\nclient_secret = "inline-secret-value"\n'
    )
    shown = repr(load(tmp_path, text))
    for secret in ("file-secret-value", "inline-secret-value", "db-password"):
        assert secret not in shown


# --- settings_for


def test_settings_for_names_the_syncs_when_it_cannot_choose(tmp_path: Path) -> None:
    """settings_for(None) with several syncs, or an unknown name, is a usage error (exit 2)
    listing the syncs."""
    deployment = load(tmp_path, "[syncs.acme]\n[syncs.globex]\n")
    assert deployment.settings_for("globex") is deployment.syncs["globex"]
    for name in (None, "initech"):
        with pytest.raises(UsageError) as info:
            deployment.settings_for(name)
        assert info.value.exit_code == 2
        assert "acme, globex" in str(info.value)
    with pytest.raises(UsageError, match="no sync named 'initech'"):
        deployment.settings_for("initech")


def test_the_readme_example_loads(tmp_path: Path) -> None:
    """The settings file README "Many syncs: the settings file" shows is one that loads."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Many syncs: the settings file", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "secrets").mkdir()
    for name in ("state-url", "acme", "payroll-url"):
        (tmp_path / "secrets" / name).write_text("sqlite:///x.db\n" if "url" in name else "s\n")

    deployment = load(tmp_path, example)

    assert deployment.names == ("acme", "acme-payroll")
    assert deployment.settings_for("acme-payroll").protime.reference_name == "PAYROLL"
    assert deployment.settings_for("acme").state_url == "sqlite:///x.db"


def test_each_sync_knows_its_name_and_no_variable_renames_it(tmp_path: Path) -> None:
    """The settings of [syncs.NAME] say NAME (the key of its state rows); the environment alone
    says `default`; IDSYNC_SYNC_NAME sets nothing."""
    path = tmp_path / "idsync.toml"
    path.write_text(
        '[syncs.acme.protime]\ntenant = "acme"\n[syncs.globex.protime]\ntenant = "globex"\n',
        encoding="utf-8",
    )
    environ = {"IDSYNC_SYNC_NAME": "other"}
    deployment = load_deployment(config_path=path, environ=environ)
    assert {n: s.sync_name for n, s in deployment.syncs.items()} == {
        "acme": "acme",
        "globex": "globex",
    }
    alone = load_deployment(environ=environ)
    assert alone.settings_for(None).sync_name == "default"
