from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from sync.errors import SchemaNotCurrentError, StateError
from sync.state import (
    Database,
    alembic_config,
    check_schema,
    current_revision,
    head_revision,
    migrations_dir,
    open_database,
    upgrade,
)
from sync.state._migrate import _revisions
from sync.state._models import Base

REPO = Path(__file__).resolve().parents[2]
TABLES = {"mappings", "runs", "events", "run_lock", "alembic_version"}


def test_upgrade_leaves_no_difference_to_the_models(migrated: Database) -> None:
    """After upgrade head, autogenerate finds nothing: the migrations match the models exactly."""
    with migrated.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    config = alembic_config()
    with migrated.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.check(config)  # what `alembic check` runs; raises on any difference


def test_check_schema_says_to_upgrade_until_upgraded(db: Database) -> None:
    """An empty database fails check_schema naming `idsync db upgrade`; after upgrade it passes."""
    assert current_revision(db) is None
    with pytest.raises(SchemaNotCurrentError, match="idsync db upgrade"):
        check_schema(db)
    upgrade(db)
    assert current_revision(db) == head_revision()
    check_schema(db)
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def test_upgrade_twice_is_a_no_op(migrated: Database) -> None:
    """A second upgrade on a database at head changes nothing and does not fail."""
    with migrated.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run_lock (name, owner, acquired_at, heartbeat_at, expires_at)"
                " VALUES ('x', 'o', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(migrated)
    with migrated.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_lock")).scalar_one() == 1
    assert current_revision(migrated) == head_revision()


def test_unknown_revision_is_reported_as_newer(migrated: Database) -> None:
    """A database stamped by a newer idsync is refused with a message saying so."""
    with migrated.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zz99'"))
    with pytest.raises(SchemaNotCurrentError, match="newer version"):
        check_schema(migrated)


def test_two_threads_upgrading_at_once_both_succeed(state_url: str) -> None:
    """Two threads with their own engines upgrade one empty database at the same moment safely."""
    dbs = [open_database(state_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(db: Database) -> None:
        barrier.wait()
        try:
            upgrade(db)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(dbs[0]) == head_revision()
    for d in dbs:
        d.dispose()


_CHILD = """
import os, sys, time
from pathlib import Path
from sync.state import open_database, upgrade
go = Path(sys.argv[2])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
upgrade(open_database(sys.argv[1]))
print("ok")
"""


def test_two_processes_upgrading_at_once_both_succeed(state_url: str, tmp_path: Path) -> None:
    """Two processes released together upgrade one empty database: both succeed, schema at head."""
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, state_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()
    results = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "ok"
    db = open_database(state_url)
    assert current_revision(db) == head_revision()
    db.dispose()


def test_alembic_command_line_needs_a_url_and_checks_clean(tmp_path: Path) -> None:
    """The `alembic` command from the repository root takes the URL from -x and finds no diff."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    alembic = [str(Path(sys.executable).parent / "alembic")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    missing = subprocess.run(
        [*alembic, "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert missing.returncode != 0
    assert "-x url=" in missing.stderr + missing.stdout
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run(
            [*alembic, "-x", f"url={url}", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr


def test_migrations_dir_prefers_the_installed_copy(tmp_path: Path) -> None:
    """The package's _migrations wins over the source tree's migrations; neither is an error."""
    package = tmp_path / "site" / "sync"
    source = tmp_path / "site" / "migrations"
    installed = package / "_migrations"
    with pytest.raises(StateError, match="missing"):
        migrations_dir(package)
    source.mkdir(parents=True)
    (source / "env.py").touch()
    assert migrations_dir(package) == source
    installed.mkdir(parents=True)
    (installed / "env.py").touch()
    assert migrations_dir(package) == installed


def test_source_tree_migrations_are_found_from_any_directory(tmp_path: Path) -> None:
    """From an unrelated working directory the real migrations and their head are found."""
    code = "from sync.state import migrations_dir, head_revision; print(migrations_dir(), head_revision())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    found, head = done.stdout.split()
    assert (Path(found) / "env.py").is_file()
    assert head == head_revision()


def test_unreachable_database_is_a_state_error_without_password() -> None:
    """check_schema on an unreachable server raises StateError and never shows the password."""
    db = open_database("postgresql+psycopg://idsync:s3cr3t-pass@127.0.0.1:1/nothing")
    with pytest.raises(StateError) as info:
        check_schema(db)
    assert "unreachable" in str(info.value)
    assert "s3cr3t-pass" not in str(info.value)
    db.dispose()


def test_head_read_from_the_scripts_is_alembics_head() -> None:
    """The head and revisions read from the scripts' source are those Alembic's ScriptDirectory finds."""
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    assert set(_revisions()) == {revision.revision for revision in script.walk_revisions()}


def test_checking_the_schema_does_not_import_alembic(tmp_path: Path) -> None:
    """The CLI imported and an up-to-date database checked, a process has loaded no alembic module."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(open_database(url))
    code = (
        "import sys\n"
        "import sync.cli._main\n"
        "from sync.state import check_schema, open_database\n"
        f"check_schema(open_database({url!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
