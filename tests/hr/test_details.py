"""Names and birth dates from HR for `idsync suggest`: a separate read, every database."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, insert

from sync.config import HRSettings
from sync.domain import HRDetails
from sync.errors import HRSourceError
from sync.hr import read_hr_details

EMPTY = dict.fromkeys(("code", "first", "last", "born", "born_text"))


def _table(hr_db) -> None:
    metadata = MetaData()
    table = Table(
        "staff",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("code", String(20)),
        Column("first", String(50)),
        Column("last", String(50)),
        Column("born", Date),
        Column("born_text", String(30)),
        mysql_charset="utf8mb4",
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    **EMPTY,
                    "code": "E1",
                    "first": " Amélie ",
                    "last": "D'Hondt",
                    "born": date(1980, 1, 2),
                },
                {**EMPTY, "code": "E2", "last": "Maes", "born_text": "1990-03-04T00:00"},
                {**EMPTY, "code": "E3", "first": "Jan", "born_text": "4 March"},
                {**EMPTY, "first": "Nobody"},
            ],
        )


def test_names_and_birth_dates_are_read_by_id(hr_db) -> None:
    """Names are trimmed; a DATE or ISO text becomes YYYY-MM-DD; an unreadable date is none;
    rows without a usable id are left out."""
    _table(hr_db)
    common = {"table": "staff", "id_column": "code", "first_name_column": "first"}
    got = read_hr_details(
        settings=HRSettings(**common, last_name_column="last", birth_date_column="born"),
        url=hr_db.url,
    )
    assert got == {
        "E1": HRDetails("Amélie", "D'Hondt", "1980-01-02"),
        "E2": HRDetails(None, "Maes", None),
        "E3": HRDetails("Jan", None, None),
    }
    as_text = read_hr_details(
        settings=HRSettings(**common, birth_date_column="born_text"), url=hr_db.url
    )
    assert as_text["E2"].birth_date == "1990-03-04"
    assert as_text["E3"].birth_date is None


def test_nothing_is_read_without_detail_columns(hr_db) -> None:
    """With no name or birth-date column set, there is nothing to read (and no query runs)."""
    assert read_hr_details(settings=HRSettings(table="missing"), url=hr_db.url) == {}


def test_an_unknown_detail_column_names_its_setting(hr_db) -> None:
    """A wrong column is an HR source error naming IDSYNC_HR__LAST_NAME_COLUMN."""
    _table(hr_db)
    settings = HRSettings(table="staff", id_column="code", last_name_column="surname")
    with pytest.raises(HRSourceError, match="IDSYNC_HR__LAST_NAME_COLUMN"):
        read_hr_details(settings=settings, url=hr_db.url)
