"""`idsync suggest`: the explained near-miss report for what the rules could not resolve."""

from __future__ import annotations

import sys
import time
from pathlib import Path  # noqa: TC003 - typer reads the annotation at run time
from typing import Annotated, TextIO

import typer

from sync.cli._common import (
    ConfigOption,
    FileFormat,
    SyncOption,
    check_file_format,
    err,
    open_store,
    settings_and_logging,
)


def register(app: typer.Typer) -> None:
    app.command("suggest")(suggest)


def suggest(
    fmt: FileFormat = "csv",
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
    sync: SyncOption = None,
    config: ConfigOption = None,
) -> None:
    """Up to 3 likely Protime persons for every unmatched or disputed HR employee, with the
    evidence, and the persons no HR employee reaches. Reads only; review the file, write yes in
    `accept`, then `idsync link --from FILE`."""
    check_file_format(fmt)
    settings = settings_and_logging(sync=sync, config=config)
    from sync.cli._contracts import document
    from sync.suggest import build_report, report_json, write_csv, write_json

    started = time.monotonic()
    with open_store(settings) as store:
        report = build_report(settings=settings, store=store)

    def write(stream: TextIO) -> None:
        if fmt == "csv":
            write_csv(report, stream)
        else:
            write_json(document("suggest", report_json(report)), stream)

    if output is None:
        write(sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as stream:
            write(stream)
    with_candidates = sum(1 for s in report.suggestions if s.candidates)
    err.print(
        f"{len(report.suggestions)} unmatched or disputed employee(s), {with_candidates} with"
        f" candidates; {len(report.unreached)} Protime person(s) no employee reaches"
        f" ({time.monotonic() - started:.1f} s)"
    )
