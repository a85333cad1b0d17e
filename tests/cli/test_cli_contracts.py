"""The machine contracts: a JSON Schema for every --json output, and the CLI's own surface
(--version, shell completion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from jsonschema import Draft202012Validator

from contracts_support import SCHEMAS, schema_for
from sync import __version__
from sync.cli._contracts import MAPPING_FIELDS, SCHEMA_VERSION
from sync.cli._main import _register, app

IDSYNC = Path(sys.executable).with_name("idsync")


def _json_commands() -> set[str]:
    """Every command path (`runs show` -> `runs-show`) that has a --json option, and export and
    suggest (their JSON is `--format json`)."""
    _register()
    root = typer.main.get_command(app)
    found = {"export", "suggest"}

    # Duck-typed: typer may build its commands from its own copy of click.
    def walk(command: Any, path: list[str]) -> None:
        if any("--json" in getattr(p, "opts", ()) for p in command.params):
            found.add("-".join(path))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return found


def test_every_json_output_has_a_2020_12_schema_with_its_version() -> None:
    """docs/schemas/ holds one valid 2020-12 schema per --json command, each pinning schema_version."""
    commands = _json_commands()
    assert {"reconcile", "status", "show", "runs", "runs-show", "export"} <= commands
    for name in commands:
        schema = schema_for(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["schema"] == {"const": name}
        assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
        assert {"schema", "schema_version", "idsync_version"} <= set(schema["required"])
    files = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert files - {"common"} == commands


def test_csv_export_columns_are_the_json_mapping_keys() -> None:
    """One list of fields serves the CSV header and the JSON mapping object (and its schema)."""
    mapping = schema_for("common")["$defs"]["mapping"]
    assert list(mapping["properties"]) == list(MAPPING_FIELDS)
    assert mapping["required"] == list(MAPPING_FIELDS)


def test_one_name_for_one_thing_across_schemas() -> None:
    """No schema uses the old or alternative names (api_requests, hr_employees, kind...)."""
    text = " ".join(p.read_text(encoding="utf-8") for p in SCHEMAS.glob("*.json"))
    for banned in ('"api_requests"', '"hr_employees"', '"protime_people"', '"actions_by_outcome"'):
        assert banned not in text, banned
    assert '"kind"' not in text


def test_version_flag_prints_the_version() -> None:
    """`idsync --version` prints the package version and exits 0."""
    result = subprocess.run([str(IDSYNC), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"idsync {__version__}"


def test_shell_completion_completes_commands() -> None:
    """typer's completion is on: the bash protocol completes `idsync ru` to `runs`."""
    env = {
        **os.environ,
        "_IDSYNC_COMPLETE": "complete_bash",
        "COMP_WORDS": "idsync ru",
        "COMP_CWORD": "1",
    }
    result = subprocess.run([str(IDSYNC)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["runs"]
    # `--show-completion` detects the shell from this process's ancestors (shellingham) and takes
    # no shell name: run from a tool with no shell among its parents it printed "Shell  not
    # supported." and the test failed (the "bash" argument was ignored). typer's own switch makes
    # the option take the name, so the script printed is bash's whatever started the tests.
    shown = subprocess.run(
        [str(IDSYNC), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_IDSYNC_COMPLETE=complete_bash" in shown.stdout


def test_json_documents_carry_their_schema_name_and_versions() -> None:
    """The document helper puts schema, schema_version and idsync_version first."""
    from sync.cli._contracts import document

    doc = document("runs", {"runs": []})
    assert list(doc)[:3] == ["schema", "schema_version", "idsync_version"]
    assert json.loads(json.dumps(doc))["idsync_version"] == __version__
