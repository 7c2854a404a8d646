"""Generated requests at every route (Hypothesis): never a 5xx, never a connection left idle in
a transaction, and nothing recorded or enqueued for a 4xx.

The examples are derandomised, so CI runs the same ones each time; a failure prints the
smallest request that breaks the rule.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api import create_app
from shared.datasets import registry
from tests.support.api import ApiSession
from tests.support.state import exports_and_jobs, idle_in_transaction

LATIN1 = st.characters(min_codepoint=32, max_codepoint=255)  # what an HTTP header can carry
# Strategies that need the datasets are deferred: the registry is loaded by a session fixture.
COLUMNS = st.deferred(lambda: st.sampled_from(sorted({c.name for d in registry().values() for c in d.columns})))
OPERATORS = ["eq", "in", "gte", "gt", "lte", "lt", "contains"]
EXAMPLES = hypothesis_settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.text(st.characters(exclude_categories=()), max_size=4)  # lone surrogates included
    | st.sampled_from(["2023-01-01T00:00:00Z", "2023-01-01", "-1", "1e999", "=1+1", "\x00", "books"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
filters = st.dictionaries(
    COLUMNS | st.text(max_size=8),
    st.dictionaries(st.sampled_from(OPERATORS) | st.text(max_size=5), json_values, max_size=3) | json_values,
    max_size=3,
)
specs = st.fixed_dictionaries(
    {"dataset": st.deferred(lambda: st.sampled_from(sorted(registry()))) | json_values},
    optional={
        "columns": st.lists(COLUMNS | st.text(max_size=8), max_size=4) | json_values,
        "filters": filters | json_values,
        "delivery": st.sampled_from(["auto", "inline", "async"]) | json_values,
        "filename": st.text(max_size=30) | json_values,
        "csv": st.fixed_dictionaries({}, optional={"bom": json_values, "neutralize_formulas": json_values})
        | json_values,
        "format": st.sampled_from(["csv", "jsonl", "xlsx"]) | json_values,
        "compression": st.sampled_from(["none", "gzip"]) | json_values,
        "xlsx": st.fixed_dictionaries({}, optional={"neutralize_formulas": json_values}) | json_values,
    },
)
# Requests that are nearly right: real columns and operators with values of every type, so
# that validation passes often and the count, the plan and the inline stream run on them.
typed_values = (
    st.integers(min_value=-(2**64), max_value=2**64)
    | st.decimals(allow_nan=False, places=3).map(str)
    | st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
    | st.text(min_size=1, max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False)
)
near_specs = st.fixed_dictionaries(
    {
        "dataset": st.just("products"),
        "filters": st.dictionaries(
            st.deferred(lambda: st.sampled_from([c.name for c in registry()["products"].columns if c.filters])),
            st.dictionaries(
                st.sampled_from(OPERATORS),
                typed_values | st.lists(typed_values, min_size=1, max_size=3),
                min_size=1,
                max_size=2,
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "columns": st.lists(
            st.deferred(lambda: st.sampled_from(list(registry()["products"].column_names))),
            min_size=1,
            max_size=4,
            unique=True,
        ),
        "delivery": st.sampled_from(["auto", "inline", "async"]),
        "filename": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,20}", fullmatch=True),
    },
)
bodies = (
    near_specs.map(lambda spec: json.dumps(spec).encode())
    | specs.map(lambda spec: json.dumps(spec).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)
content_types = st.sampled_from(["application/json"] * 4 + ["application/json; charset=utf-8", "text/plain", ""])
headers = st.fixed_dictionaries(
    {"Content-Type": content_types}, optional={"Idempotency-Key": st.text(LATIN1, max_size=40)}
)
segments = st.text(max_size=40).map(lambda t: quote(t, safe=""))


@pytest.fixture(scope="module")
def fuzz(settings, seeded, bucket, redis, keys_for):
    """An API on a queue prefix nobody serves, an owner's session, one of its exports, another owner's."""
    s = settings.replace(queue_prefix=f"fuzz-{uuid.uuid4().hex[:8]}")
    app = create_app(s)
    api = ApiSession(app.test_client(), keys_for("fuzz-owner"))
    other = ApiSession(app.test_client(), keys_for("fuzz-other"))
    mine = api.export({"dataset": "products", "filters": {"id": {"lte": 5}}})["id"]
    theirs = other.export({"dataset": "products", "filters": {"id": {"lte": 5}}})["id"]
    yield s, api, mine, theirs
    app.extensions["spillway"].close()


def _check(s, redis, before, response) -> None:
    response.get_data()  # an inline answer streams: read it all, as a client would
    response.close()
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    assert not idle_in_transaction(s)
    if response.status_code >= 400:
        assert exports_and_jobs(s, redis) == before


@EXAMPLES
@given(body=bodies, extra=headers)
def test_post_exports_never_fails_on_any_body(fuzz, redis, body, extra):
    s, api, _, _ = fuzz
    before = exports_and_jobs(s, redis)
    _check(s, redis, before, api.post("/exports", data=body, headers=extra))


@EXAMPLES
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    route=st.sampled_from(
        ["/exports/{id}", "/exports/{id}/download", "/exports/{id}/cancel", "/exports", "/datasets", "/health", "/{id}"]
    ),
    which=st.sampled_from(["mine", "theirs", "random"]),
    segment=segments,
    query=st.dictionaries(st.sampled_from(["limit", "cursor", "x"]), st.text(max_size=20), max_size=2),
    extra=headers,
)
def test_every_route_answers_any_path_and_query_without_a_5xx(fuzz, redis, method, route, which, segment, query, extra):
    s, api, mine, theirs = fuzz
    export_id = {"mine": mine, "theirs": theirs, "random": segment}[which]
    path = route.format(id=export_id)
    before = exports_and_jobs(s, redis)
    response = api.client.open(path, method=method, query_string=query, data=b"{}", headers={**api.headers, **extra})
    _check(s, redis, before, response)
    if which == "theirs" and route.startswith("/exports/{id}") and response.status_code < 405:
        assert response.status_code == 404  # another owner's export does not exist for this key


@EXAMPLES
@given(
    authorization=st.text(LATIN1, max_size=60) | st.just("Bearer ") | st.text(LATIN1).map("Bearer {}".format),
    path=st.sampled_from(["/exports", "/datasets", "/exports/00000000-0000-0000-0000-000000000000"]),
)
def test_any_authorization_header_is_a_401_or_a_valid_key(fuzz, redis, authorization, path):
    s, api, _, _ = fuzz
    response = api.client.get(path, headers={"Authorization": authorization})
    assert response.status_code in (401, 404) or authorization.endswith(api.key), response.status_code
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
