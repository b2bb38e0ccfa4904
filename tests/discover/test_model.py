"""The services document: schema, rejection of bad documents with a useful location, and a fuzz of the decoder."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stator.discover import (
    EXAMPLE_DOCUMENT,
    Capability,
    InvalidDocument,
    ServiceEntry,
    decode_services,
    encode_services,
)

SEED_DOC = b"""[
  {"uri": "http://pool04.boxworld.org/api/v2", "capabilities": [{"name": "resize", "capacity": 23}]},
  {"uri": "https://[::1]:8443/x?y=1", "capabilities": []}
]"""


def test_seed_shape_decodes() -> None:
    services = decode_services(SEED_DOC)
    assert services == (
        ServiceEntry("http://pool04.boxworld.org/api/v2", (Capability("resize", 23),)),
        ServiceEntry("https://[::1]:8443/x?y=1", ()),
    )
    assert services[0].capacity("resize") == 23 and services[0].capacity("other") == 0


def test_services_object_form_and_round_trip() -> None:
    services = decode_services(SEED_DOC)
    assert decode_services(orjson.dumps({"services": orjson.loads(SEED_DOC), "version": 3})) == services
    assert decode_services(encode_services(services)) == services


def test_example_document_is_valid() -> None:
    services = decode_services(orjson.dumps(EXAMPLE_DOCUMENT))
    assert len(services) == 3 and services[2].capacity("thumbnail") == 200


def test_unknown_keys_are_ignored() -> None:
    doc = b'[{"uri": "http://a/", "zone": "eu", "capabilities": [{"name": "x", "capacity": 1, "unit": "rps"}]}]'
    assert decode_services(doc) == (ServiceEntry("http://a/", (Capability("x", 1),)),)


@pytest.mark.parametrize(
    ("data", "kind", "where"),
    [
        (b"", "empty", "empty"),
        (b"  \n\t", "empty", "empty"),
        (b"[{", "json", "not valid JSON"),
        (b"\xff\xfe[]", "json", "not valid JSON"),
        (b'{"uri": "http://a/"}', "schema", "document: must be an array"),
        (b'"text"', "schema", "must be an array"),
        (b"[1]", "schema", "document[0]: must be an object"),
        (b'[{"capabilities": []}]', "schema", "document[0].uri: required"),
        (b'[{"uri": "http://a/"}]', "schema", "document[0].capabilities: required"),
        (b'[{"uri": "http://a/", "capabilities": {}}]', "schema", "capabilities: required, must be an array"),
        (b'[{"uri": 5, "capabilities": []}]', "schema", "uri: must be a non-empty string"),
        (b'[{"uri": "", "capabilities": []}]', "schema", "uri: must be a non-empty string"),
        (b'[{"uri": "/relative", "capabilities": []}]', "schema", "scheme must be http or https"),
        (b'[{"uri": "ftp://a/", "capabilities": []}]', "schema", "scheme must be http or https"),
        (b'[{"uri": "http://", "capabilities": []}]', "schema", "has no host"),
        (b'[{"uri": "http:///path", "capabilities": []}]', "schema", "has no host"),
        (b'[{"uri": "http://a b/", "capabilities": []}]', "schema", "whitespace"),
        (b'[{"uri": "http://a/\\u0000", "capabilities": []}]', "schema", "control characters"),
        (b'[{"uri": "http://u:p@a/", "capabilities": []}]', "schema", "credentials"),
        (b'[{"uri": "http://a:99999/", "capabilities": []}]', "schema", "bad port"),
        (b'[{"uri": "http://a:x/", "capabilities": []}]', "schema", "bad port"),
        (b'[{"uri": "http://[zz]/", "capabilities": []}]', "schema", "not a URL"),
        (b'[{"uri": "http://[v1.x]/", "capabilities": []}]', "schema", "bad IPv6"),
        (b'[{"uri": "http://a<b>/", "capabilities": []}]', "schema", "bad host"),
        (b'[{"uri": "http://a/", "capabilities": [1]}]', "schema", "capabilities[0]: must be an object"),
        (b'[{"uri": "http://a/", "capabilities": [{"capacity": 1}]}]', "schema", "capabilities[0].name"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "", "capacity": 1}]}]', "schema", ".name"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "x"}]}]', "schema", "capacity: must be an integer"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": -1}]}]', "schema", "between 0"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": 1.0}]}]', "schema", "integer"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": true}]}]', "schema", "integer"),
        (b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": "3"}]}]', "schema", "integer"),
        (
            b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": 9223372036854775808}]}]',
            "schema",
            "between 0",
        ),
        (
            b'[{"uri": "http://a/", "capabilities": [{"name": "x", "capacity": 1}, {"name": "x", "capacity": 2}]}]',
            "schema",
            "duplicate name 'x'",
        ),
        (
            b'[{"uri": "http://a/p", "capabilities": []}, {"uri": "http://b/", "capabilities": []},'
            b' {"uri": "HTTP://A:80/p", "capabilities": []}]',
            "schema",
            "document[2].uri: duplicate of document[0].uri",
        ),
        (
            b'[{"uri": "https://a/", "capabilities": []}, {"uri": "https://a:443", "capabilities": []}]',
            "schema",
            "duplicate",
        ),
    ],
)
def test_bad_documents_are_rejected_saying_where(data: bytes, kind: str, where: str) -> None:
    with pytest.raises(InvalidDocument) as info:
        decode_services(data)
    assert info.value.kind == kind
    assert where in str(info.value)


def test_one_bad_entry_rejects_the_whole_document() -> None:
    good = {"uri": "http://a/", "capabilities": [{"name": "x", "capacity": 1}]}
    bad = {"uri": "http://b/", "capabilities": [{"name": "x", "capacity": -5}]}
    with pytest.raises(InvalidDocument, match=r"document\[1\]"):
        decode_services(orjson.dumps([good, bad]))


def test_http_and_https_same_host_are_distinct() -> None:
    doc = b'[{"uri": "http://a/", "capabilities": []}, {"uri": "https://a/", "capabilities": []}]'
    assert len(decode_services(doc)) == 2


def test_deep_nesting_is_rejected_not_crashing() -> None:
    with pytest.raises(InvalidDocument):
        decode_services(b"[" * 100_000 + b"]" * 100_000)


# -- fuzz --------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson encodes; bigger ones only as bytes
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)

hosts = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True)
capabilities = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=16),
            "capacity": st.integers(min_value=0, max_value=2**63 - 1),
        }
    ),
    max_size=4,
    unique_by=lambda c: c["name"],
)
services_docs = st.lists(
    st.fixed_dictionaries(
        {
            "uri": st.builds(
                lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
                st.sampled_from(["http", "https"]),
                hosts,
                st.sampled_from(["", ":8080", ":1"]),
                st.from_regex(r"[a-z0-9/]{0,12}", fullmatch=True),
            ),
            "capabilities": capabilities,
        }
    ),
    max_size=6,
    unique_by=lambda s: s["uri"].lower().replace(":80/", "/").replace(":443/", "/"),
)


def _only_invalid_document(data: bytes) -> tuple[ServiceEntry, ...] | None:
    try:
        return decode_services(data)
    except InvalidDocument:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_crash(data: bytes) -> None:
    _only_invalid_document(data)  # any other exception fails the test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_arbitrary_json_never_crashes(value: Any) -> None:
    result = _only_invalid_document(orjson.dumps(value))
    if result is not None:
        for service in result:  # whatever is accepted satisfies the schema
            assert service.uri.startswith(("http://", "https://"))
            assert all(c.capacity >= 0 and c.name for c in service.capabilities)


@settings(max_examples=200, deadline=None)
@given(services_docs)
def test_fuzz_valid_documents_round_trip(doc: list[dict[str, Any]]) -> None:
    services = decode_services(orjson.dumps(doc))
    assert [s.as_json() for s in services] == doc
    assert decode_services(encode_services(services)) == services


@settings(max_examples=100, deadline=None)
@given(services_docs.filter(bool), st.data())
def test_fuzz_corrupted_valid_documents_are_rejected_or_valid(doc: list[dict[str, Any]], data: st.DataObject) -> None:
    # Flip one field of one entry to an arbitrary JSON value: the decoder must reject cleanly or accept a
    # document that still satisfies the schema — never crash, never accept a negative capacity.
    entry = data.draw(st.sampled_from(doc))
    field = data.draw(st.sampled_from(["uri", "capabilities"]))
    entry[field] = data.draw(json_values)
    result = _only_invalid_document(orjson.dumps(doc))
    if result is not None:
        assert all(c.capacity >= 0 for s in result for c in s.capabilities)
