"""Turning Protime's JSON answers into domain objects, refusing anything malformed.

A people page of 100 persons is parsed 1,000 times in a 100,000-person run, so this is plain dict
access and one :class:`Person` per item: no validation models. Every refusal is a
:class:`ProtimeError` that says what was wrong and where, never the offending value (people data
is personal) and never a ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sync.contract import BADGE_NUMBER_REFERENCE, EMPLOYEE_NUMBER_REFERENCE
from sync.domain import NamedPerson, Person
from sync.errors import ProtimeError

if TYPE_CHECKING:
    from sync.strings import StringPool

_MAX_SERVER_TEXT = 300


# The ids the state database can hold: SQLite's INTEGER and PostgreSQL's BIGINT are signed 64-bit.
MAX_PERSON_ID = 2**63 - 1


class _IdOutOfRangeError(Exception):
    """A person's id is an integer outside 1..2**63-1: the person is skipped, not the read."""


class MalformedAnswerError(ProtimeError):
    """Protime answered with a status we expected but a body we cannot use. Final, not retriable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, code="MalformedAnswer", retriable=False)


def decode_json(content: bytes, *, what: str, status: int) -> Any:
    """The JSON document in ``content``, or :class:`MalformedAnswerError` naming ``what``."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise MalformedAnswerError(
            f"{what}: the answer is not JSON ({len(content)} bytes)", status=status
        ) from None
    except RecursionError:
        # json.loads recurses once per nesting level: a hostile answer nested 200,000 deep
        # would end the run with a RecursionError.
        raise MalformedAnswerError(
            f"{what}: the answer is nested too deeply to be read ({len(content)} bytes)",
            status=status,
        ) from None


def check_put_answer(content: bytes, *, status: int, value: str, protime_id: int) -> None:
    """Refuse a PUT answer that is not the documented pair for ``value`` and ``protime_id``.

    The documented answer is ``{"collection", "name", "value", "internalReference"}``; an HTML
    page from a proxy, an empty body or another pair does not prove the write happened.
    """
    payload = decode_json(content, what="write answer", status=status)
    if type(payload) is not dict:
        raise MalformedAnswerError(
            f"write answer is {_kind(payload)}, expected an object", status=status
        )
    if payload.get("value") != value:
        raise MalformedAnswerError(
            "write answer does not hold the value sent"
            + (" (no 'value')" if "value" not in payload else ""),
            status=status,
        )
    held = parse_internal_reference(payload)
    if held != protime_id:
        raise MalformedAnswerError(
            f"write answer holds internalReference {held}, not the {protime_id} sent",
            status=status,
        )


def check_accepted_answer(content: bytes, *, status: int, value: str, protime_id: int) -> None:
    """Refuse a 202 Accepted answer whose body contradicts the write: not JSON, or naming another
    value or person. An empty body, or JSON that names neither (an operation's status), passes."""
    if not content.strip():
        return
    payload = decode_json(content, what="write answer", status=status)
    if type(payload) is not dict:
        raise MalformedAnswerError(
            f"write answer is {_kind(payload)}, expected an object", status=status
        )
    if "value" in payload and payload["value"] != value:
        raise MalformedAnswerError("write answer names another value", status=status)
    if "internalReference" in payload:
        held = parse_internal_reference(payload)
        if held != protime_id:
            raise MalformedAnswerError(
                f"write answer holds internalReference {held}, not the {protime_id} sent",
                status=status,
            )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _text(mapping: dict[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if type(value) is str:
        return value or None
    if value is None:
        return None
    raise MalformedAnswerError(f"{where}: {key!r} is {_kind(value)}, expected a string")


def _person(
    item: object,
    index: int,
    reference_name: str,
    with_email: bool,
    with_names: bool,
    *,
    strings: StringPool | None,
) -> Person:
    if type(item) is not dict:
        raise MalformedAnswerError(f"people page item {index} is {_kind(item)}, expected an object")
    person_id = item.get("id")
    # bool is an int subclass; an id of `true` is as malformed as a string id.
    if type(person_id) is not int or not 0 < person_id <= MAX_PERSON_ID:
        if type(person_id) is int:
            # 2**63 or 10**30 cannot be stored (SQLite INTEGER, PostgreSQL BIGINT) and 0 or a
            # negative id is none: that person is skipped and reported, the read goes on.
            raise _IdOutOfRangeError
        if "changeType" in item and "data" in item:
            raise MalformedAnswerError(
                f"people page item {index} is a change item ({{changeType, data}}), expected "
                "a plain person object (a list, and the first round of a delta, page plain objects)"
            )
        raise MalformedAnswerError(
            f"people page item {index}: 'id' is {_kind(person_id)}, expected a positive integer"
        )
    where = f"person {person_id}"
    references = item.get("externalReferences")
    if references is None:
        references = {}
    elif type(references) is not dict:
        raise MalformedAnswerError(
            f"{where}: 'externalReferences' is {_kind(references)}, expected an object"
        )
    out_of_service = item.get("outOfServiceDate")
    if out_of_service is not None and type(out_of_service) is not str:
        raise MalformedAnswerError(
            f"{where}: 'outOfServiceDate' is {_kind(out_of_service)}, expected a string"
        )
    ref_where = f"{where} externalReferences"
    # Checked either way; kept only when a matching rule uses it (100,000 unused e-mail strings
    # were 8 MB at a run's memory peak).
    email = _text(item, "email", where)
    # Names are read (and checked) for suggestions only: a run neither needs nor keeps them.
    kind: type[Person] = Person
    extra: dict[str, str | None] = {}
    if with_names:
        kind = NamedPerson
        extra = {
            "first_name": _text(item, "firstName", where),
            "last_name": _text(item, "lastName", where),
        }
    number = _text(item, "employeeNumber", where) or _text(
        references, EMPLOYEE_NUMBER_REFERENCE, ref_where
    )
    badge = _text(item, "badgeNumber", where) or _text(
        references, BADGE_NUMBER_REFERENCE, ref_where
    )
    email = email if with_email or with_names else None
    reference = _text(references, reference_name, ref_where)
    if strings is not None:
        number, badge, email, reference = (
            strings.share(number),
            strings.share(badge),
            strings.share(email),
            strings.share(reference),
        )
    return kind(
        id=person_id,
        employee_number=number,
        badge_number=badge,
        email=email,
        reference=reference,
        out_of_service=bool(out_of_service),
        **extra,
    )


def parse_people_page(
    payload: object,
    *,
    reference_name: str,
    with_email: bool = True,
    with_names: bool = False,
    strings: StringPool | None = None,
) -> tuple[list[Person], str | None]:
    """The persons of one people page and its ``nextLink`` (``None`` on the last page).

    ``with_email=False`` leaves ``Person.email`` empty (the field is still checked).
    ``with_names=True`` gives :class:`NamedPerson` objects with names and e-mail (suggestions).
    ``strings``: keys and references are the pool's objects (:mod:`sync.strings`).
    """
    page = parse_list_page(
        payload,
        reference_name=reference_name,
        with_email=with_email,
        with_names=with_names,
        strings=strings,
    )
    return page.people, page.next_link


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of plain person objects: ``GET /people``, or the first round of a delta.

    ``versions[i]`` is the ``changeVersion`` of ``people[i]`` (None when the object has none);
    ``delta_link`` is set on the last page of a delta's first round only.
    """

    people: list[Person]
    versions: list[str | None]
    next_link: str | None
    delta_link: str | None = None


def _links(payload: dict[str, Any], what: str) -> tuple[str | None, str | None]:
    links: list[str | None] = []
    for key in ("nextLink", "deltaLink"):
        link = payload.get(key)
        if link is not None and type(link) is not str:
            raise MalformedAnswerError(f"{what} {key!r} is {_kind(link)}, expected a path")
        links.append(link or None)
    return links[0], links[1]


def _version(item: dict[str, Any], where: str, *, required: bool) -> str | None:
    """An item's ``changeVersion``: a string that compares lexically (docs: "a string")."""
    version = item.get("changeVersion")
    if type(version) is str and version:
        return version
    if version is None and not required:
        return None
    raise MalformedAnswerError(
        f"{where}: 'changeVersion' is {_kind(version)}"
        + (" (empty)" if version == "" else "")
        + ", expected a non-empty string"
    )


def parse_list_page(
    payload: object,
    *,
    reference_name: str,
    with_email: bool = True,
    with_names: bool = False,
    strings: StringPool | None = None,
    skipped: list[int] | None = None,
) -> ListPage:
    """A page of plain person objects with their versions and links (:class:`ListPage`).

    The first round of a delta pages exactly like ``GET /people``: plain objects, ``nextLink``
    while more, and on its last page a ``deltaLink``. A person object may carry a
    ``changeVersion``; a version of another type than a string is refused. A person whose id
    is an integer outside 1..2**63-1 (the state database cannot hold it) is left out, and its
    index added to ``skipped``.
    """
    if type(payload) is not dict:
        raise MalformedAnswerError(f"people page is {_kind(payload)}, expected an object")
    items = payload.get("value")
    if type(items) is not list:
        raise MalformedAnswerError(
            f"people page has no 'value' list ({_kind(items)} instead)"
            if "value" in payload
            else "people page has no 'value' list"
        )
    next_link, delta_link = _links(payload, "people page")
    try:
        people = [
            _person(item, index, reference_name, with_email, with_names, strings=strings)
            for index, item in enumerate(items)
        ]
    except _IdOutOfRangeError:
        # Rare: the page is parsed again, item by item, leaving out the ids that cannot be held.
        people, items = _without_bad_ids(
            items,
            reference_name=reference_name,
            with_email=with_email,
            with_names=with_names,
            strings=strings,
            skipped=skipped,
        )
    # _person checked that every item is an object; a bad version is looked at only when seen.
    versions = [item.get("changeVersion") for item in items]
    for p, version in zip(people, versions, strict=True):
        if not (type(version) is str and version) and version is not None:
            _version({"changeVersion": version}, f"person {p.id}", required=False)
    return ListPage(people, versions, next_link, None if next_link else delta_link)


def _without_bad_ids(
    items: list[Any],
    *,
    reference_name: str,
    with_email: bool,
    with_names: bool,
    strings: StringPool | None,
    skipped: list[int] | None,
) -> tuple[list[Person], list[Any]]:
    """The persons of a page whose ids fit, and their items; ``skipped`` takes the others'
    indexes."""
    people: list[Person] = []
    kept: list[Any] = []
    for index, item in enumerate(items):
        try:
            people.append(
                _person(item, index, reference_name, with_email, with_names, strings=strings)
            )
        except _IdOutOfRangeError:
            if skipped is not None:
                skipped.append(index)
            continue
        kept.append(item)
    return people, kept


@dataclass(frozen=True, slots=True)
class Change:
    """One item of a set of changes: a person inserted or updated (``person``), or deleted
    (``person`` None), at ``version``. ``references_known`` is False when the item carried no
    ``externalReferences`` map: its references are unknown, not absent (docs/protime-client.md)."""

    id: int
    version: str
    person: Person | None
    references_known: bool = True


def parse_changes_page(
    payload: object,
    *,
    reference_name: str,
    with_email: bool = True,
    strings: StringPool | None = None,
    skipped: list[int] | None = None,
) -> tuple[list[Change], str | None, str | None]:
    """One page of a set of changes (a call of the ``deltaLink``): its changes, its ``nextLink``
    and, on the last page, its new ``deltaLink``. ``strings`` as for :func:`parse_people_page`.

    Items are ``{"changeType": "InsertOrUpdate" | "Delete", "data": {...}}``, ``data`` with a
    string ``changeVersion``; a Delete may carry only ``id`` and ``changeVersion``. One person
    may appear several times (the caller keeps the newest version). Anything else is refused: a
    change we cannot read must not be skipped silently. An item whose id is an integer outside
    1..2**63-1 is left out and its index added to ``skipped`` (the caller reports it).
    """
    if type(payload) is not dict:
        raise MalformedAnswerError(f"delta page is {_kind(payload)}, expected an object")
    items = payload.get("value")
    if type(items) is not list:
        raise MalformedAnswerError("delta page has no 'value' list")
    next_link, delta_link = _links(payload, "delta page")
    changes: list[Change] = []
    for index, item in enumerate(items):
        change = item.get("changeType") if type(item) is dict else None
        data = item.get("data") if type(item) is dict else None
        if change not in ("InsertOrUpdate", "Delete"):
            raise MalformedAnswerError(
                f"delta page item {index}: 'changeType' is "
                + (repr(change)[:40] if type(change) is str else _kind(change))
                + ", expected 'InsertOrUpdate' or 'Delete'"
            )
        if type(data) is not dict:
            raise MalformedAnswerError(
                f"delta page item {index} ({change}): 'data' is {_kind(data)}, expected an object"
            )
        made = (
            _delete(data, index)
            if change == "Delete"
            else _upsert(data, index, reference_name, with_email, strings)
        )
        if made is not None:
            changes.append(made)
        elif skipped is not None:
            skipped.append(index)
    if next_link is None and delta_link is None:
        raise MalformedAnswerError("the last delta page has no deltaLink")
    return changes, next_link, None if next_link else delta_link


def _upsert(
    data: dict[str, Any],
    index: int,
    reference_name: str,
    with_email: bool,
    strings: StringPool | None,
) -> Change | None:
    """An InsertOrUpdate item; None when its id is an integer outside 1..2**63-1."""
    try:
        person = _person(data, index, reference_name, with_email, with_names=False, strings=strings)
    except _IdOutOfRangeError:
        return None
    version = _version(data, f"delta page item {index} (person {person.id})", required=True)
    assert version is not None  # required
    known = data.get("externalReferences") is not None
    return Change(person.id, version, person, known)


def _delete(data: dict[str, Any], index: int) -> Change | None:
    """A Delete item; None when its id is an integer outside 1..2**63-1 (skipped, reported)."""
    pid = data.get("id")
    if type(pid) is not int:
        raise MalformedAnswerError(
            f"delta page item {index}: a Delete without a positive integer 'id'"
        )
    if not 0 < pid <= MAX_PERSON_ID:
        return None
    version = _version(data, f"delta page item {index} (Delete of {pid})", required=True)
    assert version is not None  # required
    return Change(pid, version, None)


def parse_internal_reference(payload: object) -> int:
    """The Protime id held by one custom-reference answer (a string or a number, §7)."""
    if type(payload) is not dict:
        raise MalformedAnswerError(f"reference answer is {_kind(payload)}, expected an object")
    raw = payload.get("internalReference")
    if type(raw) is int and raw > 0:
        return raw
    if type(raw) is str and raw.isascii() and raw.isdecimal() and int(raw) > 0:
        return int(raw)
    raise MalformedAnswerError(
        f"reference answer 'internalReference' is {_kind(raw)}"
        + (" not holding a positive integer" if type(raw) is str else "")
        + ", expected a positive integer or its string"
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SERVER_TEXT else text[: _MAX_SERVER_TEXT - 1] + "…"


def parse_error_body(content: bytes) -> tuple[str | None, str | None]:
    """``(code, message)`` from Protime's error envelope or validation errors, when present.

    Never raises: an error answer we cannot read still becomes an error with its status.
    """
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if type(body) is not dict:
        return None, None
    error = body.get("error")
    if type(error) is dict:
        code = error.get("code")
        message = error.get("message")
        reasons = error.get("reasons")
        parts = [message] if type(message) is str and message else []
        if type(reasons) is list:
            parts.extend(r for r in reasons if type(r) is str and r)
        return (
            code if type(code) is str else None,
            _short("; ".join(parts)) if parts else None,
        )
    if type(error) is str:
        # OAuth2 token endpoints answer {"error": "invalid_client", "error_description": "..."}.
        description = body.get("error_description")
        return error, _short(description) if type(description) is str else None
    validation = body.get("validationErrors")
    if type(validation) is list and validation:
        try:
            texts = [v if type(v) is str else json.dumps(v, ensure_ascii=False) for v in validation]
        except (RecursionError, ValueError):
            texts = [f"{len(validation)} validation error(s), not readable"]
        return "ValidationFailed", _short("; ".join(texts))
    return None, None


def parse_token(payload: object) -> tuple[str, float | None]:
    """``(access_token, expires_in)`` from a token answer. Messages never include the body."""
    if type(payload) is not dict:
        raise MalformedAnswerError(f"token answer is {_kind(payload)}, expected an object")
    token = payload.get("access_token")
    if type(token) is not str or not token:
        raise MalformedAnswerError("token answer has no 'access_token' string")
    expires_in = payload.get("expires_in")
    if expires_in is None:
        return token, None
    if type(expires_in) not in (int, float) or not math.isfinite(expires_in) or expires_in <= 0:
        raise MalformedAnswerError(
            f"token answer 'expires_in' is {_kind(expires_in)}, expected a positive number"
        )
    return token, float(expires_in)
