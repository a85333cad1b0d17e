from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)

from sync.config import HRSettings
from sync.domain import HREmployee
from sync.errors import ConfigError, HRSourceError
from sync.hr import read_hr, write_back
from sync.values import FORBIDDEN_CHARACTERS

if TYPE_CHECKING:
    from pathlib import Path

# (id, expected reason fragment): at least 30 rows that must end invalid, each for its reason.
BAD_IDS: list[tuple[str | None, str]] = [
    ("", "empty"),
    (None, "empty"),
    (" ", "white space"),
    (" E1", "white space"),
    ("E1 ", "white space"),
    ("\tE2", "white space"),
    ("E2\n", "white space"),
    ("\u00a0E3", "white space"),  # no-break space
    ("E3\u2028", "white space"),  # line separator
    *[(f"A{ch}1", f"forbidden character(s) {ch}") for ch in sorted(FORBIDDEN_CHARACTERS)],
    ("x" * 256, "longer than 255 characters (256)"),
    ("é" * 300, "longer than 255 characters (300)"),
    ("E\x01X", "control character"),
    ("E\x1bX", "control character"),
    ("E\x7fX", "control character"),
    ("1 OR 1=1 /*", "forbidden character(s) * /"),
    ("%' OR '1'='1", "forbidden character(s) %"),
    ("<script>alert(1)</script>", "forbidden character(s) / < >"),
    ("http://evil", "forbidden character(s) / :"),
    ("../../etc/passwd", "forbidden character(s) /"),
    ("E#1?x=1&y=2", "forbidden character(s) # & ?"),
]
# Valid by the rules, some of them odd on purpose: these must sync.
GOOD_IDS = [
    "E100",
    "'; DROP TABLE employees;--",  # SQL-looking but no forbidden character: just a string
    "Robert'); DROP TABLE Students;--",
    "E 1",
    "émile-42",
    "山田太郎",
    "Ωmega_7",
    "😀42",
    "E\u200bX",  # zero-width space: a format character, neither white space nor control
    "a" * 255,
]
DUPLICATES = ["DUP1", "DUP1", "DUP2", "DUP2", "DUP2"]


def _employees_table(metadata: MetaData, name: str = "employees") -> Table:
    return Table(
        name,
        metadata,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("employee_id", String(1000)),
        Column("personnel_no", String(50)),
        Column("badge", String(50)),
        Column("email", String(255)),
        Column("status", String(20)),
        mysql_charset="utf8mb4",
    )


def _corpus(dialect: str) -> list[dict[str, Any]]:
    bad = list(BAD_IDS)
    if dialect != "postgresql":  # PostgreSQL text cannot hold NUL at all
        bad.append(("E\x00X", "control character"))
    rows: list[dict[str, Any]] = [{"employee_id": raw, "expected": reason} for raw, reason in bad]
    rows += [{"employee_id": raw, "expected": "duplicate id"} for raw in DUPLICATES]
    rows += [{"employee_id": raw, "expected": None} for raw in GOOD_IDS]
    rows += [
        {
            "employee_id": "G1",
            "personnel_no": " 0042 ",
            "badge": "",
            "email": " John.Doe@Example.COM ",
            "expected": None,
        },
        {"employee_id": "LEFT", "status": "inactive", "expected": "out"},
        {"employee_id": "LEFT2", "status": "N", "expected": "out"},
        {"employee_id": "STAYS", "status": "whatever", "expected": None},
    ]
    for number, row in enumerate(rows, start=1):
        row["row_number"] = number
    return rows


def _settings(**extra: Any) -> HRSettings:
    return HRSettings(
        table="employees",
        id_column="employee_id",
        employee_number_column="personnel_no",
        badge_number_column="badge",
        email_column="email",
        active_column="status",
        **extra,
    )


def _load(hr_db, rows: list[dict[str, Any]], name: str = "employees") -> Table:
    metadata = MetaData()
    table = _employees_table(metadata, name)
    metadata.create_all(hr_db.engine)
    columns = ("employee_id", "personnel_no", "badge", "email", "status")
    with hr_db.engine.begin() as conn:
        conn.execute(insert(table), [{c: row.get(c) for c in columns} for row in rows])
    return table


def test_bad_rows_end_invalid_with_their_reason_while_good_rows_come_through(hr_db) -> None:
    """Every row of the bad corpus is invalid with its own reason; the good rows in the same read sync."""
    rows = _corpus(hr_db.dialect)
    _load(hr_db, rows)
    assert sum(1 for r in rows if r["expected"] not in (None, "out")) >= 30

    snap = read_hr(settings=_settings(), url=hr_db.url)

    invalid = {r.row_number: r for r in snap.invalid}
    for row in rows:
        expected = row["expected"]
        if expected in (None, "out"):
            assert row["row_number"] not in invalid, (row, invalid.get(row["row_number"]))
            continue
        found = invalid.get(row["row_number"])
        assert found is not None, row
        assert expected in found.reason, (row, found)
        raw = row["employee_id"] or None
        # Over-long ids cannot be keys: their row is keyed by its number instead.
        assert found.hr_id == (raw if raw is None or len(raw) <= 255 else None)
    assert len(invalid) == sum(1 for r in rows if r["expected"] not in (None, "out"))

    by_id = {e.hr_id: e for e in snap.employees}
    assert set(by_id) == {*GOOD_IDS, "G1", "STAYS"}
    assert by_id["G1"] == HREmployee(
        "G1", employee_number="0042", badge_number=None, email="john.doe@example.com"
    )
    assert snap.out_of_scope_ids == frozenset({"LEFT", "LEFT2"})

    dup1_rows = [r["row_number"] for r in rows if r["employee_id"] == "DUP1"]
    assert invalid[dup1_rows[0]].reason == f"duplicate id, rows {dup1_rows[0]}, {dup1_rows[1]}"


def test_sqlite_non_string_ids_are_invalid_and_integers_are_text(tmp_path: Path) -> None:
    """A typeless SQLite column holding floats, bytes and ints: ints (and 2.0) become text, the
    rest invalid."""
    from sqlalchemy import create_engine

    path = tmp_path / "hr.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE staff (n INTEGER PRIMARY KEY, code)"))
        for value in (1.5, 2.0, b"E1", 123, "E9"):
            conn.execute(text("INSERT INTO staff (code) VALUES (:v)"), {"v": value})
    engine.dispose()
    snap = read_hr(settings=HRSettings(table="staff", id_column="code"), url=f"sqlite:///{path}")
    assert [e.hr_id for e in snap.employees] == ["2", "123", "E9"]
    assert [(r.row_number, r.reason) for r in snap.invalid] == [
        (1, "not a string/integer (float)"),
        (3, "not a string/integer (bytes)"),
    ]


_TYPED_QUERIES = {
    "postgresql": [
        ("SELECT 1.5::float8 AS employee_id", "not a string/integer (float)"),
        ("SELECT true AS employee_id", "not a string/integer (bool)"),
        ("SELECT DATE '2024-01-02' AS employee_id", "not a string/integer (date)"),
        ("SELECT 4.20::numeric(5,2) AS employee_id", "not a string/integer (Decimal)"),
        ("SELECT '\\x4531'::bytea AS employee_id", "not a string/integer (bytes)"),
        ("SELECT 42::numeric(10,0) AS employee_id", None),
        ("SELECT 42::bigint AS employee_id", None),
    ],
    "mysql": [
        ("SELECT CAST(1.5 AS DOUBLE) AS employee_id", "not a string/integer (float)"),
        ("SELECT DATE '2024-01-02' AS employee_id", "not a string/integer (date)"),
        ("SELECT CAST(4.2 AS DECIMAL(5,2)) AS employee_id", "not a string/integer (Decimal)"),
        ("SELECT CAST('E1' AS BINARY) AS employee_id", "not a string/integer (bytes)"),
        ("SELECT CAST(42 AS DECIMAL(10,0)) AS employee_id", None),
        ("SELECT 42 AS employee_id", None),
    ],
    "sqlite": [
        ("SELECT 1.5 AS employee_id", "not a string/integer (float)"),
        ("SELECT X'4531' AS employee_id", "not a string/integer (bytes)"),
        ("SELECT 42 AS employee_id", None),
    ],
}


def test_typed_query_results_follow_the_id_rules(hr_db) -> None:
    """Server-typed ids (float, bool, date, decimal, bytes) are invalid; integers read as "42"."""
    for query, reason in _TYPED_QUERIES[hr_db.dialect]:
        snap = read_hr(settings=HRSettings(query=query, id_column="employee_id"), url=hr_db.url)
        if reason is None:
            assert [e.hr_id for e in snap.employees] == ["42"], query
        else:
            assert [r.reason for r in snap.invalid] == [reason], query


def test_boolean_and_bit_active_columns(hr_db) -> None:
    """A real boolean active column (BIT/TINYINT on MariaDB) puts false rows out of scope."""
    metadata = MetaData()
    table = Table(
        "people",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("code", String(20)),
        Column("active", Boolean),
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {"code": "A", "active": True},
                {"code": "B", "active": False},
                {"code": "C", "active": None},
            ],
        )
    snap = read_hr(
        settings=HRSettings(table="people", id_column="code", active_column="active"), url=hr_db.url
    )
    assert [e.hr_id for e in snap.employees] == ["A", "C"]
    assert snap.out_of_scope_ids == frozenset({"B"})


def test_query_mode_picks_columns_by_name(hr_db) -> None:
    """A configured query runs as written; its result columns are matched to the settings by name."""
    _load(
        hr_db,
        [
            {"employee_id": "E1", "personnel_no": "7", "status": "Y"},
            {"employee_id": "E2", "status": "N"},
        ],
    )
    settings = HRSettings(
        query="SELECT employee_id AS hr, personnel_no AS nr, status AS st FROM employees ORDER BY row_id",
        id_column="hr",
        employee_number_column="NR",  # case differs: matched case-insensitively
        active_column="st",
    )
    snap = read_hr(settings=settings, url=hr_db.url)
    assert snap.employees == (HREmployee("E1", employee_number="7"),)
    assert snap.out_of_scope_ids == frozenset({"E2"})


def test_unknown_table_and_columns_name_their_setting(hr_db) -> None:
    """Wrong table or column names raise HRSourceError naming the IDSYNC_HR__ variable."""
    _load(hr_db, [{"employee_id": "E1"}])
    with pytest.raises(HRSourceError, match="IDSYNC_HR__TABLE: table 'nope' not found"):
        read_hr(settings=HRSettings(table="nope"), url=hr_db.url)
    with pytest.raises(
        HRSourceError, match="IDSYNC_HR__ID_COLUMN: column 'emp' is not in table"
    ) as info:
        read_hr(settings=HRSettings(table="employees", id_column="emp"), url=hr_db.url)
    assert "employee_id" in str(info.value)  # the columns that do exist are listed
    with pytest.raises(HRSourceError, match="IDSYNC_HR__BADGE_NUMBER_COLUMN"):
        read_hr(
            settings=HRSettings(
                table="employees", id_column="employee_id", badge_number_column="x"
            ),
            url=hr_db.url,
        )
    with pytest.raises(
        HRSourceError, match="IDSYNC_HR__EMAIL_COLUMN: column 'mail' is not in the query"
    ):
        read_hr(
            settings=HRSettings(
                query="SELECT employee_id FROM employees",
                email_column="mail",
                id_column="employee_id",
            ),
            url=hr_db.url,
        )
    with pytest.raises(HRSourceError, match="IDSYNC_HR__QUERY: reading the HR employees failed"):
        read_hr(settings=HRSettings(query="SELECT nothing FROM nowhere"), url=hr_db.url)


def test_table_names_match_case_insensitively(hr_db) -> None:
    """A table created as Staff_List is found when configured as staff_list."""
    _load(hr_db, [{"employee_id": "E1"}], name="Staff_List")
    snap = read_hr(settings=HRSettings(table="staff_list", id_column="EMPLOYEE_ID"), url=hr_db.url)
    assert [e.hr_id for e in snap.employees] == ["E1"]


def test_a_query_that_writes_is_refused_and_rolled_back(hr_db) -> None:
    """A statement that is not a SELECT is an error (PostgreSQL's cursor refuses it outright), and
    whatever it changed is rolled back."""
    _load(hr_db, [{"employee_id": "E1"}, {"employee_id": "E2"}])
    with pytest.raises(HRSourceError, match=r"IDSYNC_HR__QUERY: .*(returns no rows|failed)"):
        read_hr(
            settings=HRSettings(query="DELETE FROM employees", id_column="employee_id"),
            url=hr_db.url,
        )
    with hr_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM employees")).scalar_one() == 2


def test_missing_table_or_query_is_a_config_error(hr_db) -> None:
    """Without IDSYNC_HR__TABLE or IDSYNC_HR__QUERY there is nothing to read."""
    with pytest.raises(ConfigError, match="IDSYNC_HR__TABLE or IDSYNC_HR__QUERY"):
        read_hr(settings=HRSettings(), url=hr_db.url)


def test_unreachable_database_never_shows_the_password() -> None:
    """Connection failures name the URL with its password hidden."""
    with pytest.raises(HRSourceError, match="could not be reached") as info:
        read_hr(
            settings=HRSettings(table="t"), url="postgresql+psycopg://hr:Pa55-secret@127.0.0.1:1/hr"
        )
    assert "Pa55-secret" not in str(info.value)
    assert "***" in str(info.value)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    """A mistyped SQLite path is an error, and no empty database file appears."""
    missing = tmp_path / "typo.db"
    with pytest.raises(HRSourceError, match="does not exist"):
        read_hr(settings=HRSettings(table="t"), url=f"sqlite:///{missing}")
    assert not missing.exists()


@pytest.fixture
def wb_table(hr_db):
    metadata = MetaData()
    table = Table(
        "hr_people",
        metadata,
        Column("emp_no", Integer, primary_key=True, autoincrement=False),
        Column("protime_id", Integer),
        Column("protime_ref", Text),
        Column("amount", Numeric(10, 0)),
    )
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {"emp_no": 1, "protime_id": 11, "protime_ref": None},
                {"emp_no": 2, "protime_id": None, "protime_ref": None},
                {"emp_no": 3, "protime_id": None, "protime_ref": None},
                {"emp_no": 4, "protime_id": None, "protime_ref": "44"},
            ],
        )
    return table


def test_write_back_updates_only_changed_rows(hr_db, wb_table) -> None:
    """Protime ids are written for changed pairs only, in one go; a repeat changes nothing."""
    settings = HRSettings(
        table="hr_people",
        id_column="emp_no",
        writeback_table="hr_people",
        writeback_column="protime_id",
    )
    pairs = {"1": 11, "2": 22, "3": 33, "99": 99}
    assert write_back(settings=settings, url=hr_db.url, pairs=pairs) == 2
    assert write_back(settings=settings, url=hr_db.url, pairs=pairs) == 0
    with hr_db.engine.connect() as conn:
        stored = dict(conn.execute(select(wb_table.c.emp_no, wb_table.c.protime_id)).tuples().all())
    assert stored == {1: 11, 2: 22, 3: 33, 4: None}


def test_write_back_into_a_text_column(hr_db, wb_table) -> None:
    """A text target column receives the Protime id as text; equal text counts as unchanged."""
    settings = HRSettings(
        table="hr_people",
        id_column="emp_no",
        writeback_table="hr_people",
        writeback_id_column="emp_no",
        writeback_column="protime_ref",
    )
    assert write_back(settings=settings, url=hr_db.url, pairs={"4": 44, "1": 10}) == 1
    with hr_db.engine.connect() as conn:
        assert (
            conn.execute(select(wb_table.c.protime_ref).where(wb_table.c.emp_no == 1)).scalar_one()
            == "10"
        )


def test_write_back_needs_its_settings(hr_db, wb_table) -> None:
    """Without the write-back settings it refuses; a wrong column names its variable."""
    with pytest.raises(ConfigError, match="IDSYNC_HR__WRITEBACK_TABLE"):
        write_back(settings=HRSettings(table="hr_people"), url=hr_db.url, pairs={"1": 1})
    bad = HRSettings(
        table="hr_people", id_column="emp_no", writeback_table="hr_people", writeback_column="nope"
    )
    with pytest.raises(HRSourceError, match="IDSYNC_HR__WRITEBACK_COLUMN"):
        write_back(settings=bad, url=hr_db.url, pairs={"1": 1})


@pytest.mark.parametrize(
    "hr_db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_100k_rows_are_read_in_one_pass(hr_db) -> None:
    """100,000 rows come through in one streamed read; the time is printed (read with -s)."""
    metadata = MetaData()
    table = _employees_table(metadata)
    metadata.create_all(hr_db.engine)
    with hr_db.engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {"employee_id": f"E{i:06d}", "personnel_no": str(i), "email": f"p{i}@x.org"}
                for i in range(100_000)
            ],
        )
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 100_000
    started = time.perf_counter()
    snap = read_hr(settings=_settings(), url=hr_db.url)
    seconds = time.perf_counter() - started
    assert len(snap.employees) == 100_000
    assert snap.invalid == ()
    print(f"\n[{hr_db.dialect}] read_hr 100,000 rows: {seconds:.2f}s")  # noqa: T201
