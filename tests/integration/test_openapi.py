"""``GET /openapi.json``: a valid OpenAPI 3.1 document that lists exactly the app's routes, and
whose schemas hold the API's real answers — successes and errors — for every JSON route."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from api import create_app
from tests.support.waiting import free_port

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def document(app) -> dict[str, Any]:
    """The document as the API serves it."""
    answer = app.test_client().get("/openapi.json")
    assert answer.status_code == 200 and answer.content_type == "application/json"
    return answer.get_json()


def _holds(document: dict[str, Any], path: str, method: str, answer) -> None:
    """The answer's JSON body is valid against the document's schema for its route and status."""
    response = document["paths"][path][method]["responses"][str(answer.status_code)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    # The schema's $refs point into the document's components: validate against a root that has them.
    errors = list(OAS31Validator({**schema, "components": document["components"]}).iter_errors(answer.get_json()))
    assert not errors, f"{method.upper()} {path} {answer.status_code}: {[e.message for e in errors]}"


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_document_lists_exactly_the_apps_routes(app, document):
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    documented = {
        (path, method) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    assert documented == routes


def test_real_answers_hold_to_the_schemas(app, document, keys, bucket):
    client = app.test_client()
    alice = {"Authorization": f"Bearer {keys['alice']}"}
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    _holds(document, "/datasets", "get", client.get("/datasets", headers=alice))
    created = client.post("/exports", json={"dataset": "products", "delivery": "async"}, headers=alice)
    assert created.status_code == 202
    _holds(document, "/exports", "post", created)
    export_id = created.get_json()["id"]
    path = "/exports/{export_id}"
    _holds(document, path, "get", client.get(f"/exports/{export_id}", headers=alice))
    _holds(document, "/exports", "get", client.get("/exports?limit=2", headers=alice))
    _holds(document, "/limits", "get", client.get("/limits", headers=alice))
    _holds(document, "/health/live", "get", client.get("/health/live"))
    _holds(document, "/health/ready", "get", client.get("/health/ready"))
    _holds(document, path + "/download", "get", client.get(f"/exports/{export_id}/download", headers=alice))  # 409
    _holds(document, path + "/cancel", "post", client.post(f"/exports/{export_id}/cancel", headers=alice))
    _holds(document, path + "/cancel", "post", client.post(f"/exports/{export_id}/cancel", headers=bob))  # 404
    # error shapes
    bad = client.post("/exports", json={"dataset": "products", "columns": ["secret"]}, headers=alice)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "columns"
    _holds(document, "/exports", "post", bad)
    _holds(document, "/exports", "post", client.post("/exports", data="x", headers=alice))  # 415
    _holds(document, "/exports", "get", client.get("/exports", headers={"Authorization": "Bearer sw_nope"}))  # 401
    _holds(document, "/exports", "get", client.get("/exports?limit=0", headers=alice))  # 400
    _holds(document, path, "get", client.get(f"/exports/{export_id.upper()}", headers=alice))  # 404


def test_a_readiness_failure_holds_to_its_schema(settings, document):
    broken = create_app(settings.replace(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", health_timeout_s=1.0))
    try:
        answer = broken.test_client().get("/health/ready")
        assert answer.status_code == 503 and answer.get_json()["down"] == ["s3"]
        _holds(document, "/health/ready", "get", answer)
    finally:
        broken.extensions["spillway"].close()
