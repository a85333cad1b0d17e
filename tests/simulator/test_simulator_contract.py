"""Contract tests: the requests and answers of the Protime guide and every documented error path.

Each test runs twice through the `make_harness` fixture: in-process (httpx transport) and over a
real loopback socket (uvicorn in a thread).
"""

from __future__ import annotations

import re

import httpx
import pytest

from sim_helpers import API, CHANGE_VERSION, GUIDE_PEOPLE, FakeClock
from sync.simulator import ClientSpec, SimulatorConfig

pytestmark = pytest.mark.anyio

JAN = {k: v for k, v in GUIDE_PEOPLE[1].items() if k != "externalReferences"}


def _person(raw: dict[str, object], refs: dict[str, str] | None = None) -> dict[str, object]:
    """The API form of a guide person: its fields, change version left to the caller."""
    out = {k: v for k, v in raw.items() if k != "externalReferences"}
    if refs is not None:
        out["externalReferences"] = refs
    return out


def _without_version(body: dict[str, object]) -> dict[str, object]:
    version = body.pop("changeVersion")
    assert isinstance(version, str)
    assert re.fullmatch(CHANGE_VERSION, version)
    return body


# ---- the guide's requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ("(people,@badge-number)", {"@badge-number": "6767676"}),
        ("(people,HRMID)", {"HRMID": "6767676"}),
        ("(people,@badge-number)(people,HRMID)", {"@badge-number": "6767676", "HRMID": "6767676"}),
    ],
)
async def test_guide_get_person_with_external_references(guide, pairs, expected):
    """GET with (people,@badge-number), (people,HRMID) or both gives the person the guide shows."""
    async with guide.client() as client:
        response = await client.get(f"{API}/people/123152", params={"externalReferences": pairs})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert _without_version(response.json()) == _person(JAN, expected)


async def test_guide_list_people_with_two_pairs(guide):
    """A people list with two pairs puts the map on each person and leaves absent names out."""
    async with guide.client() as client:
        response = await client.get(
            f"{API}/people", params={"externalReferences": "(people,@badge-number)(people,HRMID)"}
        )
    assert response.status_code == 200
    body = response.json()
    assert "nextLink" not in body
    assert [_without_version(p) for p in body["value"]] == [
        _person(GUIDE_PEOPLE[0], {"@badge-number": "1004781"}),
        _person(GUIDE_PEOPLE[1], {"@badge-number": "6767676", "HRMID": "6767676"}),
        _person(GUIDE_PEOPLE[2], {"@badge-number": "6767677"}),
    ]


async def test_people_without_parameter_carry_no_reference_map(guide):
    """Without externalReferences the person object has no externalReferences key at all."""
    async with guide.client() as client:
        body = (await client.get(f"{API}/people/4781")).json()
    assert "externalReferences" not in body
    assert _without_version(body) == _person(GUIDE_PEOPLE[0])


async def test_guide_put_creates_then_updates(guide):
    """PUT {"internalReference": "4781"} answers 201 + Location when new, 200 when it existed."""
    path = f"{API}/external-references/people/HRMID/Emp123"
    expected = {
        "collection": "people",
        "name": "HRMID",
        "value": "Emp123",
        "internalReference": "4781",
    }
    async with guide.client() as client:
        created = await client.put(path, json={"internalReference": "4781"})
        again = await client.put(path, json={"internalReference": "4781"})
        person = await client.get(
            f"{API}/people/4781", params={"externalReferences": "(people,HRMID)"}
        )
    assert created.status_code == 201
    assert created.json() == expected
    assert created.headers["location"] == path
    assert again.status_code == 200
    assert again.json() == expected
    assert person.json()["externalReferences"] == {"HRMID": "Emp123"}
    assert guide.sim.world.references("HRMID") == {"6767676": 123152, "Emp123": 4781}


async def test_put_accepts_a_json_number(guide):
    """internalReference given as a JSON integer is accepted and answered as a string."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/E9", json={"internalReference": 4781}
        )
    assert response.status_code == 201
    assert response.json()["internalReference"] == "4781"


async def test_put_repoints_a_value_to_another_person(guide):
    """PUT of an existing value with another internal id moves it (200); the old holder loses it."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/6767676", json={"internalReference": "4781"}
        )
    assert response.status_code == 200
    assert guide.sim.world.reference_of(123152) is None
    assert guide.sim.world.reference_of(4781) == "6767676"


async def test_get_one_list_and_delete_references(guide):
    """GET one, GET list, DELETE (204), then GET and DELETE of the gone value answer 404."""
    base = f"{API}/external-references/people/HRMID"
    async with guide.client() as client:
        await client.put(f"{base}/Emp1", json={"internalReference": "4781"})
        one = await client.get(f"{base}/Emp1")
        listed = await client.get(base)
        deleted = await client.delete(f"{base}/Emp1")
        gone = await client.get(f"{base}/Emp1")
        deleted_again = await client.delete(f"{base}/Emp1")
    assert one.status_code == 200
    assert one.json() == {
        "collection": "people",
        "name": "HRMID",
        "value": "Emp1",
        "internalReference": "4781",
    }
    assert listed.json() == {
        "value": [
            {"value": "Emp1", "internalReference": "4781"},
            {"value": "6767676", "internalReference": "123152"},
        ]
    }
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NotFound"
    assert deleted_again.status_code == 404


async def test_reference_values_are_case_sensitive(guide):
    """'abc' and 'ABC' are two values; each may point at its own person."""
    base = f"{API}/external-references/people/HRMID"
    async with guide.client() as client:
        first = await client.put(f"{base}/abc", json={"internalReference": "4781"})
        second = await client.put(f"{base}/ABC", json={"internalReference": "123153"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert guide.sim.world.references("HRMID")["abc"] == 4781
    assert guide.sim.world.references("HRMID")["ABC"] == 123153


# ---- one value per person ------------------------------------------------------------------------


async def test_second_value_for_a_person_conflicts_by_default(guide):
    """A second value for the same person and name answers 409 Conflict and changes nothing."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/other", json={"internalReference": "123152"}
        )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "Conflict"
    assert "current value: 6767676" in error["reasons"]
    assert guide.sim.world.references("HRMID") == {"6767676": 123152}


async def test_second_value_for_a_person_replaces_when_configured(make_harness, guide_file):
    """With one_value_per_person='replace' the old value is dropped and the new one created."""
    harness = make_harness(people_file=guide_file, one_value_per_person="replace")
    async with harness.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/other", json={"internalReference": "123152"}
        )
    assert response.status_code == 201
    assert harness.sim.world.references("HRMID") == {"other": 123152}


# ---- token endpoint ------------------------------------------------------------------------------


async def test_token_endpoint_issues_a_bearer_token(guide):
    """Client credentials give a Bearer token with the configured lifetime that the API accepts."""
    async with guide.client(token=None) as client:
        response = await client.post(
            guide.sim.token_path,
            data={
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
                "scope": "connector-protimeapi-people.read",
            },
        )
        body = response.json()
        people = await client.get(
            f"{API}/people", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"] == "connector-protimeapi-people.read"
    assert people.status_code == 200


async def test_token_by_http_basic_and_all_scopes(make_harness):
    """HTTP Basic client authentication works; without `scope` every client scope is granted."""
    harness = make_harness(token_ttl_seconds=60)
    async with harness.client(token=None) as client:
        response = await client.post(
            harness.sim.token_path,
            data={"grant_type": "client_credentials"},
            auth=("demo-client", "demo-secret"),
        )
    assert response.status_code == 200
    assert response.json()["expires_in"] == 60
    assert set(response.json()["scope"].split()) == {
        "connector-protimeapi-people.read",
        "connector-protimeapi-external-references.write",
    }


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_id": "demo-client", "client_secret": "demo-secret"}, 400, "invalid_request"),
        (
            {"grant_type": "password", "client_id": "demo-client", "client_secret": "x"},
            400,
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "no"},
            400,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            400,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        (
            {
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
                "scope": "connector-protimeapi-clockings.write",
            },
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "demo-client", "extra": "1"},
            400,
            "invalid_request",
        ),
    ],
)
async def test_token_errors_are_oauth2_json(guide, form, status, error):
    """Bad token requests answer OAuth2 error JSON ({"error": ...}) with 400."""
    async with guide.client(token=None) as client:
        response = await client.post(guide.sim.token_path, data=form)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "demo-secret" not in response.text


async def test_bad_client_can_answer_401(make_harness):
    """invalid_client_status=401 answers a wrong secret with 401; HTTP Basic always gets 401."""
    harness = make_harness(invalid_client_status=401)
    form = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "no"}
    async with harness.client(token=None) as client:
        by_form = await client.post(harness.sim.token_path, data=form)
    default = make_harness()
    async with default.client(token=None) as client:
        by_basic = await client.post(
            default.sim.token_path,
            data={"grant_type": "client_credentials"},
            auth=("demo-client", "wrong"),
        )
    assert by_form.status_code == 401
    assert by_form.json()["error"] == "invalid_client"
    assert by_basic.status_code == 401
    assert by_basic.headers["www-authenticate"].startswith("Basic")


async def test_token_endpoint_rejects_other_tenant_json_and_get(guide):
    """Another tenant, a JSON body and a GET are refused without a token."""
    form = {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
    }
    async with guide.client(token=None) as client:
        other = await client.post("/tenants/other/connect/token", data=form)
        as_json = await client.post(guide.sim.token_path, json=form)
        as_get = await client.get(guide.sim.token_path)
    assert (other.status_code, other.json()["error"]) == (400, "invalid_request")
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert as_get.status_code == 405
    assert guide.sim.tokens_issued == 0


# ---- checks on every request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer nonsense", "Basic ZGVtbzpkZW1v", "bearer x y"]
)
async def test_missing_or_invalid_token_is_401(guide, authorization):
    """No token, an empty one, an unknown one or another scheme answers 401 with the envelope."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with guide.client(token=None) as client:
        response = await client.get(f"{API}/people", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_expires_after_its_lifetime(make_harness, guide_file):
    """A token is accepted until expires_in seconds have passed on the simulator clock, then 401."""
    clock = FakeClock()
    harness = make_harness(people_file=guide_file, token_ttl_seconds=1800, clock=clock)
    async with harness.client() as client:
        clock.now += 1799
        before = await client.get(f"{API}/people/4781")
        clock.now += 2
        after = await client.get(f"{API}/people/4781")
    assert before.status_code == 200
    assert after.status_code == 401


async def test_expire_tokens_invalidates_every_token(guide):
    """sim.expire_tokens() makes the next call with an old token answer 401."""
    async with guide.client() as client:
        before = await client.get(f"{API}/people/4781")
        guide.sim.expire_tokens()
        after = await client.get(f"{API}/people/4781")
    assert (before.status_code, after.status_code) == (200, 401)


@pytest.mark.parametrize("status", [403, 401])
async def test_missing_scope(make_harness, guide_file, status):
    """A token without the needed scope answers 403, or 401 when so configured."""
    harness = make_harness(people_file=guide_file, scope_error_status=status)
    token = harness.sim.issue_token(scopes=frozenset({"connector-protimeapi-people.read"}))
    async with harness.client(token=token) as client:
        read = await client.get(f"{API}/people")
        write = await client.put(
            f"{API}/external-references/people/HRMID/x", json={"internalReference": "4781"}
        )
        listing = await client.get(f"{API}/external-references/people/HRMID")
    assert read.status_code == 200
    assert write.status_code == status
    assert write.json()["error"]["code"] == ("Forbidden" if status == 403 else "Unauthorized")
    assert listing.status_code == status
    assert harness.sim.world.references("HRMID") == {"6767676": 123152}


async def test_people_read_needs_the_people_scope(guide):
    """A token with only the references scope cannot read people (403)."""
    token = guide.sim.issue_token(
        scopes=frozenset({"connector-protimeapi-external-references.write"})
    )
    async with guide.client(token=token) as client:
        response = await client.get(f"{API}/people")
    assert response.status_code == 403


async def test_missing_user_agent_is_400(guide):
    """A request without User-Agent answers 400 with the error envelope."""
    async with guide.client(user_agent=None) as client:
        response = await client.get(f"{API}/people")
        token = await client.post(
            guide.sim.token_path,
            data={
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
            },
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "User-Agent" in response.json()["error"]["message"]
    assert token.status_code == 400


async def test_missing_user_agent_accepted_when_configured(make_harness, guide_file):
    """With user_agent_required=False a request without User-Agent is served."""
    harness = make_harness(people_file=guide_file, user_agent_required=False)
    async with harness.client(user_agent=None) as client:
        response = await client.get(f"{API}/people")
    assert response.status_code == 200


async def test_uri_over_4096_characters_is_414(guide):
    """A URI of 4,097 characters answers 414; one of 4,096 is served."""

    def uri(letters: int) -> str:
        return f"{API}/people?filter=firstName eq '{'a' * letters}'"

    def length(letters: int) -> int:
        return len(httpx.URL("http://sim" + uri(letters)).raw_path)

    fits = 4096 - length(0)
    assert length(fits) == 4096
    async with guide.client() as client:
        ok = await client.get(uri(fits))
        too_long = await client.get(uri(fits + 1))
    assert ok.status_code == 200
    assert too_long.status_code == 414
    assert too_long.json()["error"]["code"] == "UriTooLong"


async def test_unknown_paths_and_methods(guide):
    """Unknown paths answer 404, wrong methods 405 with Allow, all in the error envelope."""
    async with guide.client() as client:
        unknown = await client.get(f"{API}/clockings")
        outside = await client.get("/nothing/here")
        post_people = await client.post(f"{API}/people", json={})
        post_ref = await client.post(f"{API}/external-references/people/HRMID/x", json={})
    assert unknown.status_code == 404
    assert outside.status_code == 404
    assert post_people.status_code == 405
    assert post_people.headers["allow"] == "GET"
    assert post_ref.status_code == 405
    for response in (unknown, outside, post_people, post_ref):
        assert set(response.json()["error"]) >= {"code", "message"}


# ---- §7 validation of reference requests ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_value", "reason"),
    [
        ("a%2Fb", "forbidden"),
        ("a%5Cb", "forbidden"),
        ("a%3Fb", "forbidden"),
        ("a%23b", "forbidden"),
        ("a%25b", "forbidden"),
        ("a%26b", "forbidden"),
        ("a*b", "forbidden"),
        ("a:b", "forbidden"),
        ("a%3Cb", "forbidden"),
        ("a%3Eb", "forbidden"),
        ("a%09b", "control"),
        ("a%00b", "control"),
        ("%20ab", "white space"),
        ("ab%20", "white space"),
        ("", "empty"),
        ("x" * 256, "longer than 255"),
    ],
)
async def test_invalid_values_are_400(guide, raw_value, reason):
    """Forbidden characters, control characters, outer blanks, empty and too long values: 400."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/{raw_value}",
            json={"internalReference": "4781"},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "invalid external reference format"
    assert reason in error["reasons"][0]
    assert guide.sim.world.reference_of(4781) is None


async def test_value_length_limit_is_configurable(make_harness, guide_file):
    """max_value_length=10 accepts 10 characters and refuses 11."""
    harness = make_harness(people_file=guide_file, max_value_length=10)
    async with harness.client() as client:
        ok = await client.put(
            f"{API}/external-references/people/HRMID/{'a' * 10}", json={"internalReference": "4781"}
        )
        too_long = await client.put(
            f"{API}/external-references/people/HRMID/{'b' * 11}",
            json={"internalReference": "123153"},
        )
    assert (ok.status_code, too_long.status_code) == (201, 400)


async def test_unicode_values_are_allowed(guide):
    """A value with accented letters (percent-encoded UTF-8) is stored as the same string."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/Zoë-Ünal", json={"internalReference": "4781"}
        )
    assert response.status_code == 201
    assert response.json()["value"] == "Zoë-Ünal"
    assert guide.sim.world.reference_of(4781) == "Zoë-Ünal"


@pytest.mark.parametrize("status", [400, 403])
async def test_predefined_names_are_read_only(make_harness, guide_file, status):
    """PUT, DELETE and GET on an @ name answer the configured 400 or 403."""
    harness = make_harness(people_file=guide_file, predefined_write_status=status)
    base = f"{API}/external-references/people/@badge-number"
    async with harness.client() as client:
        put = await client.put(f"{base}/123", json={"internalReference": "4781"})
        delete = await client.delete(f"{base}/6767676")
        get = await client.get(f"{base}/6767676")
    assert {put.status_code, delete.status_code, get.status_code} == {status}
    assert "read-only" in put.json()["error"]["message"]


@pytest.mark.parametrize("name", ["HR%20ID", "a" * 65, "HR.ID", "%C3%A9"])
async def test_invalid_names_are_400(guide, name):
    """A custom name outside 1-64 letters, digits, '-' and '_' answers 400."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/{name}/v1", json={"internalReference": "4781"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "invalid external reference name"


async def test_unknown_collection_is_404_and_unknown_internal_id_is_404(guide):
    """An unknown collection and an internal id that does not exist both answer 404."""
    async with guide.client() as client:
        collection = await client.put(
            f"{API}/external-references/widgets/HRMID/v1", json={"internalReference": "4781"}
        )
        person = await client.put(
            f"{API}/external-references/people/HRMID/v1", json={"internalReference": "999999"}
        )
        other_kind = await client.put(
            f"{API}/external-references/shift-definitions/CODE/v1",
            json={"internalReference": "4781"},
        )
    assert collection.status_code == 404
    assert person.status_code == 404
    assert "999999" in person.json()["error"]["message"]
    assert other_kind.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "internalReference"),
        ({"internalReference": None}, "internalReference"),
        ({"internalReference": True}, "internalReference"),
        ({"internalReference": 47.81}, "internalReference"),
        ({"internalReference": "47a"}, "internalReference"),
        ({"internalReference": "-4781"}, "internalReference"),
        ({"internalReference": "0"}, "internalReference"),
        ({"internalReference": ["4781"]}, "internalReference"),
        ([1, 2], ""),
        ("4781", ""),
    ],
)
async def test_body_validation_errors(guide, body, field):
    """Missing fields and wrong types answer 400 with a top-level validationErrors array."""
    async with guide.client() as client:
        response = await client.put(f"{API}/external-references/people/HRMID/v1", json=body)
    assert response.status_code == 400
    errors = response.json()["validationErrors"]
    assert errors[0]["field"] == field
    assert errors[0]["message"]
    assert "error" not in response.json()


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b'{"internalReference": "4781"', "application/json", "malformed JSON"),
        (b"", "application/json", "required"),
        (b'{"internalReference": "4781"}', "text/plain", "Content-Type"),
        (b'{"internalReference": "4781"}', None, "Content-Type"),
        (b'{"internalReference": "4781"}', "application/json; charset=utf-16", "UTF-8"),
        (b'{"internalReference": "\xff"}', "application/json", "UTF-8"),
        (b'{"internalReference": NaN}', "application/json", "malformed JSON"),
        (b"[" * 100_000, "application/json", "larger than"),
        (b"[" * 50_000, "application/json", "malformed JSON"),
    ],
)
async def test_malformed_bodies_are_400(guide, content, content_type, fragment):
    """Malformed JSON, a wrong content type, odd encodings and huge bodies answer 400."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/v1", content=content, headers=headers
        )
    assert response.status_code == 400
    assert fragment in response.json()["validationErrors"][0]["message"]


async def test_utf8_bom_is_accepted(guide):
    """A JSON body with a UTF-8 byte order mark is read like one without."""
    async with guide.client() as client:
        response = await client.put(
            f"{API}/external-references/people/HRMID/v1",
            content=b'\xef\xbb\xbf{"internalReference": "4781"}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 201


# ---- paging --------------------------------------------------------------------------------------


async def test_paging_follows_next_links_to_the_end(make_harness):
    """With page size 7, 50 people come back once each, in id order, over 8 pages."""
    harness = make_harness(people=50, page_size=7)
    ids: list[int] = []
    pages = 0
    async with harness.client() as client:
        url: str | None = f"{API}/people?externalReferences=(people,@employee-number)"
        while url:
            body = (await client.get(url)).json()
            pages += 1
            ids.extend(p["id"] for p in body["value"])
            assert all("@employee-number" in p["externalReferences"] for p in body["value"])
            url = body.get("nextLink")
            assert url is None or url.startswith(f"{API}/people?")
    assert pages == 8
    assert ids == sorted(harness.sim.world.people)
    assert len(ids) == 50


async def test_empty_pages_still_carry_next_link(make_harness):
    """Injected empty pages keep a nextLink, and following the links still yields everyone."""
    harness = make_harness(people=30, page_size=10, empty_page_rate=0.5, fault_seed=3)
    ids: list[int] = []
    empty = 0
    async with harness.client() as client:
        url: str | None = f"{API}/people"
        while url:
            body = (await client.get(url)).json()
            if not body["value"]:
                empty += 1
                assert "nextLink" in body
            ids.extend(p["id"] for p in body["value"])
            url = body.get("nextLink")
    assert empty > 0
    assert ids == sorted(harness.sim.world.people)


async def test_reference_list_is_paged(make_harness):
    """GET on a reference name pages its values with nextLink like every list."""
    harness = make_harness(people=25, page_size=10)
    world = harness.sim.world
    for pid in list(world.people):
        world.set_reference(f"HR{pid}", pid)
    values: list[str] = []
    async with harness.client() as client:
        url: str | None = f"{API}/external-references/people/HRMID"
        while url:
            body = (await client.get(url)).json()
            values.extend(v["value"] for v in body["value"])
            url = body.get("nextLink")
    assert values == [f"HR{pid}" for pid in sorted(world.people)]


@pytest.mark.parametrize("token", ["garbage", "cDp4", "cjox", ""])
async def test_invalid_continuation_token_is_400(guide, token):
    """A continuation token the simulator did not issue answers 400."""
    async with guide.client() as client:
        response = await client.get(f"{API}/people", params={"continuationToken": token})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "invalid continuationToken"


# ---- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("id in (4781, 123153)", [4781, 123153]),
        ("id eq 123152", [123152]),
        ("employeeNumber eq 'E-4821'", [123152]),
        ("badgeNumber eq '6767677'", [123153]),
        ("badgeNumber eq '6767676' and employeeNumber eq 'E-4821'", [123152]),
        ("badgeNumber eq '6767676' and employeeNumber eq 'E-4781'", []),
        ("id eq 4781 or badgeNumber eq '6767677'", [4781, 123153]),
        ("(id eq 4781 or id eq 123152) and inServiceDate ge '2016-01-01'", [123152]),
        ("outOfServiceDate eq null", [4781, 123152]),
        ("outOfServiceDate le '2024-12-31'", [123153]),
        ("lastName eq 'Dubois'", [123153]),
        ("email eq 'nobody@acme.example'", []),
    ],
)
async def test_filters(guide, expression, expected):
    """The filter subset selects the expected people."""
    async with guide.client() as client:
        response = await client.get(f"{API}/people", params={"filter": expression})
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["value"]] == expected


@pytest.mark.parametrize(
    "expression",
    [
        "salary eq 1",
        "id eq '4781'",
        "badgeNumber eq 6767676",
        "id gt 5",
        "id in 4781",
        "id eq",
        "(id eq 1",
        "id eq 1 xor id eq 2",
        "",
        "'",
        "(" * 40 + "id eq 1" + ")" * 40,
    ],
)
async def test_bad_filters_are_400(guide, expression):
    """An unknown field, a wrong literal type or broken syntax answers 400 with a reason."""
    async with guide.client() as client:
        response = await client.get(f"{API}/people", params={"filter": expression})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "invalid filter"
    assert error["reasons"]


@pytest.mark.parametrize(
    "pairs",
    [
        "(people,@shoe-size)",
        "(widgets,HRMID)",
        "(people,HR ID)",
        "people,HRMID",
        "(people,HRMID",
        "(people,HRMID)x",
        "",
    ],
)
async def test_bad_external_references_parameter_is_400(guide, pairs):
    """Unknown collections, unknown @ names, bad names and broken syntax answer 400."""
    async with guide.client() as client:
        response = await client.get(f"{API}/people", params={"externalReferences": pairs})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "invalid externalReferences parameter"


async def test_unknown_and_repeated_query_parameters_are_400(guide):
    """A misspelt parameter or one given twice is refused instead of silently ignored."""
    async with guide.client() as client:
        typo = await client.get(f"{API}/people", params={"externalReference": "(people,HRMID)"})
        twice = await client.get(f"{API}/people?filter=id eq 1&filter=id eq 2")
    assert typo.status_code == 400
    assert "externalReference" in typo.json()["error"]["reasons"][0]
    assert twice.status_code == 400


async def test_get_person_by_id_errors_and_etag(guide):
    """Unknown id 404, non-numeric reference 400, and If-None-Match with the ETag gives 304."""
    async with guide.client() as client:
        missing = await client.get(f"{API}/people/5")
        not_numeric = await client.get(f"{API}/people/abc")
        first = await client.get(f"{API}/people/4781")
        cached = await client.get(
            f"{API}/people/4781", headers={"If-None-Match": first.headers["etag"]}
        )
    assert missing.status_code == 404
    assert not_numeric.status_code == 400
    assert cached.status_code == 304
    assert cached.content == b""


# ---- rate limit and faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("whole", lambda value: value == "1"),
        ("fractional", lambda value: value is not None and 0 < float(value) <= 1 and "." in value),
        ("none", lambda value: value is None),
    ],
)
async def test_rate_limit_answers_429_with_retry_after(make_harness, guide_file, style, check):
    """Past the bucket, the client gets 429 and a Retry-After in the configured style."""
    harness = make_harness(
        people_file=guide_file,
        rate_limit_per_second=1.0,
        rate_limit_burst=2,
        retry_after_style=style,
    )
    async with harness.client() as client:
        statuses = [(await client.get(f"{API}/people/4781")) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "TooManyRequests"
    assert check(statuses[2].headers.get("retry-after"))


async def test_rate_limit_is_per_client(make_harness, guide_file):
    """One client's empty bucket does not limit another client."""
    clients = (
        ClientSpec("a", "sa", frozenset({"connector-protimeapi-people.read"})),
        ClientSpec("b", "sb", frozenset({"connector-protimeapi-people.read"})),
    )
    harness = make_harness(
        config=SimulatorConfig(
            people_file=guide_file, clients=clients, rate_limit_per_second=0.5, rate_limit_burst=1
        )
    )
    async with (
        harness.client(token=harness.sim.issue_token("a")) as a,
        harness.client(token=harness.sim.issue_token("b")) as b,
    ):
        a1, a2 = await a.get(f"{API}/people"), await a.get(f"{API}/people")
        b1 = await b.get(f"{API}/people")
    assert (a1.status_code, a2.status_code, b1.status_code) == (200, 429, 200)


async def test_runtime_429_storm_and_recovery(guide):
    """set_faults(fault_rate_429=1) answers every call 429; switching it off restores service."""
    async with guide.client() as client:
        guide.sim.set_faults(fault_rate_429=1.0, retry_after_seconds=2.5)
        storm = [await client.get(f"{API}/people") for _ in range(3)]
        guide.sim.set_faults(fault_rate_429=0.0)
        after = await client.get(f"{API}/people")
    assert {r.status_code for r in storm} == {429}
    assert {r.headers["retry-after"] for r in storm} == {"3"}
    assert after.status_code == 200


@pytest.mark.parametrize(("field", "status"), [("fault_rate_500", 500), ("fault_rate_503", 503)])
async def test_injected_server_errors(make_harness, guide_file, field, status):
    """A fault share of 1 answers every API call with 500 or 503 (503 with Retry-After)."""
    harness = make_harness(people_file=guide_file, **{field: 1.0})
    async with harness.client() as client:
        response = await client.get(f"{API}/people")
    assert response.status_code == status
    assert response.json()["error"]["message"] == "injected fault"
    assert ("retry-after" in response.headers) == (status == 503)
    assert harness.sim.counters.count("people.list", status) == 1


async def test_dropped_connection_is_a_transport_error(make_harness, guide_file):
    """A dropped answer surfaces as httpx.RemoteProtocolError, and the write it answered is done."""
    harness = make_harness(people_file=guide_file, fault_drop_rate=1.0)
    async with harness.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.put(
                f"{API}/external-references/people/HRMID/dropped",
                json={"internalReference": "4781"},
            )
        harness.sim.set_faults(fault_drop_rate=0.0)
        after = await client.get(f"{API}/people/4781")
    assert after.status_code == 200
    assert harness.sim.world.reference_of(4781) == "dropped"
    assert harness.sim.counters.count("references.put", 0) == 1


async def test_faults_are_deterministic_for_a_seed(make_harness, guide_file):
    """Two simulators with the same fault seed answer the same sequence of statuses."""
    sequences = []
    for _ in range(2):
        harness = make_harness(
            people_file=guide_file, fault_rate_500=0.3, fault_rate_503=0.3, fault_seed=11
        )
        async with harness.client() as client:
            sequences.append([(await client.get(f"{API}/people")).status_code for _ in range(20)])
    assert sequences[0] == sequences[1]
    assert {200, 500, 503} <= set(sequences[0])


async def test_latency_sleeps_fixed_plus_jitter(make_harness, guide_file, monkeypatch):
    """Each API call sleeps latency_ms plus a jitter in [0, latency_jitter_ms)."""
    import sync.simulator._inject as inject_module

    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(inject_module, "_sleep", fake_sleep)
    harness = make_harness(people_file=guide_file, latency_ms=20, latency_jitter_ms=10)
    async with harness.client() as client:
        for _ in range(5):
            assert (await client.get(f"{API}/people/4781")).status_code == 200
    assert len(delays) == 5
    assert all(0.020 <= d < 0.030 for d in delays)
    assert len(set(delays)) > 1


async def test_counters_count_per_endpoint_and_status(guide):
    """Counters record every answered request by endpoint label and status."""
    async with guide.client() as client:
        await client.get(f"{API}/people")
        await client.get(f"{API}/people/4781")
        await client.get(f"{API}/people/1")
        await client.put(
            f"{API}/external-references/people/HRMID/c1", json={"internalReference": 1}
        )
    assert guide.sim.counters.as_dict() == {
        "people.get": {"200": 1, "404": 1},
        "people.list": {"200": 1},
        "references.put": {"404": 1},
    }


async def test_user_agent_is_not_checked_before_the_uri_length(guide):
    """The 414 check comes first: an over-long URI without User-Agent still answers 414."""
    async with guide.client(user_agent=None) as client:
        response = await client.get(f"{API}/people?filter=" + "x" * 5000)
    assert response.status_code == 414
