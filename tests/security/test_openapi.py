"""The OpenAPI document: complete, valid OpenAPI 3.1, and what the service really answers.

The schemathesis suite generates requests from ``/api/openapi.json`` and checks every answer
against the document: no 5xx, only documented statuses, content types, headers and bodies.
The checks of the document itself need the app object only (``unit``); the answers need the
database and Redis, and one check the production server (``live``).
"""

import pytest
import schemathesis
from flask import Blueprint
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from pydantic import TypeAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scoreboard.api.openapi import build_document, documented, operation_of, undocumented_routes
from scoreboard.api.schemas import ClaimBody, CompletionBody, LoginBody
from tests.support import bearer, wait_until

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture
def document(offline_app):
    """The served document (served by an app like the test app, which needs no service for it)."""
    response = offline_app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def http_routes(app):
    """``(path, method)`` of every HTTP route of the app."""
    return [
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if not rule.websocket and rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    ]


@pytest.mark.unit
def test_document_is_valid_openapi_3_1_and_public(document):
    """Served without a token and valid against the OpenAPI 3.1 schema."""
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


@pytest.mark.unit
def test_every_api_route_is_documented(offline_app, document):
    """No route under /api (nor any other HTTP route) is missing from the document."""
    import re

    api_routes = [(path, method) for path, method in http_routes(offline_app) if path.startswith("/api/")]
    assert len(api_routes) >= 13
    for path, method in api_routes:
        templated = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", path)
        assert method.lower() in document["paths"].get(templated, {}), f"{method} {path} is not in the document"
    # The ops probes and any other HTTP route too.
    assert undocumented_routes(offline_app) == []


@pytest.mark.unit
def test_websockets_are_described(offline_app, document):
    """Every WebSocket route is listed under x-websockets with its message schema."""
    sockets = [rule.rule for rule in offline_app.url_map.iter_rules() if rule.websocket]
    assert sockets and set(sockets) <= set(document["x-websockets"])
    board = document["x-websockets"]["/ws/scoreboard"]
    # One of three messages, told apart by "type": the board, the viewer's own place, an error.
    refs = {option["$ref"].rsplit("/", 1)[1] for option in board["message"]["oneOf"]}
    assert (
        refs == {"TopMessage", "MeMessage", "SocketError"}
        and board["message"]["discriminator"]["propertyName"] == "type"
    )
    schemas = document["components"]["schemas"]
    assert set(schemas["TopMessage"]["properties"]["type"]["enum"]) == {"snapshot", "update"}
    assert {"rank", "score", "total", "period"} <= set(schemas["MeMessage"]["properties"])
    assert {p["name"] for p in board["parameters"]} >= {"ticket", "period"}


@pytest.mark.unit
def test_a_new_undocumented_route_is_caught():
    """The completeness check sees a route that nobody declared."""
    from scoreboard import create_app

    fresh = create_app({"TESTING": True})
    extra = Blueprint("extra", __name__, url_prefix="/api/extra")
    extra.add_url_rule("/thing", "thing", lambda: "", methods=["PUT"])
    extra.add_url_rule("/known", "known", documented("Known", auth="public", responses={200: None})(lambda: ""))
    fresh.register_blueprint(extra)
    assert undocumented_routes(fresh) == [("/api/extra/thing", "PUT")]
    assert "/api/extra/known" in build_document(fresh)["paths"]


@pytest.mark.unit
def test_request_schemas_are_the_validating_models(offline_app, document):
    """Each request body schema is the one generated from the model ``parse_body`` validates with."""
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/api/action/do", ClaimBody),
        ("/api/actions/completions", CompletionBody),
        ("/api/auth/login", LoginBody),
    ):
        ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        expected = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        assert schemas[model.__name__] == expected
    # Every documented body belongs to the view that declares it.
    for rule in offline_app.url_map.iter_rules():
        operation = operation_of(offline_app.view_functions[rule.endpoint])
        if operation is not None and operation.body is not None:
            assert operation.body.__name__ in schemas
    assert schemas["ClaimBody"]["additionalProperties"] is False
    assert schemas["ClaimBody"]["properties"]["actionId"]["pattern"] == "^[A-Za-z0-9_-]+$"


@pytest.mark.unit
def test_security_and_errors_follow_each_endpoint(document):
    """Roles become security requirements; every error status uses the Error schema."""
    paths = document["paths"]
    assert paths["/api/actions/completions"]["post"]["security"] == [{"bearerAuth": ["service"]}]
    assert paths["/api/admin/board"]["get"]["security"] == [{"bearerAuth": ["admin"]}]
    assert paths["/api/action/do"]["post"]["security"] == [{"bearerAuth": []}]
    assert paths["/api/auth/login"]["post"]["security"] == []
    assert paths["/api/openapi.json"]["get"]["security"] == []
    claim = paths["/api/action/do"]["post"]["responses"]
    assert {"200", "400", "401", "404", "409", "410", "413", "429", "503"} <= set(claim)
    completions = paths["/api/actions/completions"]["post"]["responses"]
    assert {"200", "201", "403", "409", "422"} <= set(completions)
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "429", "503"} <= set(responses), f"{method} {path}"
            if "requestBody" in operation:
                assert {"400", "413"} <= set(responses), f"{method} {path}"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"
            if operation["security"] and [r for s in operation["security"] for r in s.get("bearerAuth", [])]:
                assert "403" in responses


@pytest.mark.unit
def test_public_board_setting_drops_the_boards_security(offline_app):
    """SCOREBOARD_PUBLIC_BOARD makes the board's operation and socket public in the document."""
    before = offline_app.config["PUBLIC_BOARD"]
    try:
        offline_app.config["PUBLIC_BOARD"] = True
        public = build_document(offline_app)
    finally:
        offline_app.config["PUBLIC_BOARD"] = before
    assert public["paths"]["/api/score/top"]["get"]["security"] == []
    assert public["x-websockets"]["/ws/scoreboard"]["security"] == []
    assert build_document(offline_app)["paths"]["/api/score/top"]["get"]["security"] == [{"bearerAuth": []}]


# --- the service answers as documented --------------------------------------------------


@pytest.fixture
def seeded(app, client, mint, record, record_and_claim):
    """A board with points, a pending and a claimed completion, an adjusted user: 2xx answers to check."""
    claimed = record_and_claim("u1", "complete-lesson")["actionId"]
    pending = record("u1", "pass-quiz")["actionId"]
    record("u2", "complete-lesson", displayName="Two")
    admin = bearer(mint("root", "admin"))
    assert (
        client.post(
            "/api/admin/users/u2/adjustments", json={"delta": 7, "reason": "support ticket"}, headers=admin
        ).status_code
        == 201
    )
    return {"pending": pending, "claimed": claimed}


@pytest.fixture
def api_schema(app, seeded):
    """The served document, loaded by schemathesis against the in-process app."""
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def headers_for(operation, mint):
    """A fresh valid token for the operation: its role if it has one, else a user's."""
    roles = operation.definition.raw.get("x-roles", [])
    if not operation.definition.raw.get("security"):
        return {}
    # Fresh per call: logout revokes the token it is called with.
    return bearer(mint("u1", *roles))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_service_conforms_to_its_document(case, mint):
    """schemathesis: generated requests with valid tokens; every answer as documented."""
    case.call_and_validate(headers=headers_for(case.operation, mint), checks=CHECKS)


def test_happy_paths_conform_to_the_document(app, client, mint, seeded, api_schema):
    """A 2xx from every endpoint, each validated against the document."""
    user, service, admin = bearer(mint("u1")), bearer(mint("site", "service")), bearer(mint("root", "admin"))
    calls = [
        (
            "POST",
            "/api/actions/completions",
            "/api/actions/completions",
            service,
            {"userId": "u3", "action": "complete-lesson"},
            201,
        ),
        ("GET", "/api/actions", "/api/actions", user, None, 200),
        ("POST", "/api/action/do", "/api/action/do", user, {"actionId": seeded["pending"]}, 200),
        ("GET", "/api/score/top", "/api/score/top", user, None, 200),
        ("GET", "/api/score/top?period=day", "/api/score/top", user, None, 200),
        ("GET", "/api/scores?limit=1", "/api/scores", user, None, 200),
        ("GET", "/api/scores/me?period=week&radius=1", "/api/scores/me", user, None, 200),
        ("GET", "/api/scores/users?ids=u1,u2,u3", "/api/scores/users", user, None, 200),
        ("GET", "/api/admin/users/u1", "/api/admin/users/{user_id}", admin, None, 200),
        (
            "POST",
            "/api/admin/users/u2/status",
            "/api/admin/users/{user_id}/status",
            admin,
            {"status": "hidden", "reason": "spam reports"},
            200,
        ),
        (
            "POST",
            "/api/admin/users/u1/adjustments",
            "/api/admin/users/{user_id}/adjustments",
            admin,
            {"delta": -3, "reason": "double counted"},
            201,
        ),
        (
            "POST",
            f"/api/admin/completions/{seeded['claimed']}/void",
            "/api/admin/completions/{action_id}/void",
            admin,
            {"reason": "fraud check"},
            200,
        ),
        (
            "POST",
            "/api/admin/tokens/revoke",
            "/api/admin/tokens/revoke",
            admin,
            {"jti": "some-jti", "reason": "leaked token"},
            200,
        ),
        ("GET", "/api/admin/board", "/api/admin/board", admin, None, 200),
        ("GET", "/api/scores/u1/history?limit=2", "/api/scores/{user_id}/history", user, None, 200),
        ("GET", "/api/scores/u2/history?period=month", "/api/scores/{user_id}/history", admin, None, 200),
        ("GET", "/api/admin/audit?limit=5", "/api/admin/audit", admin, None, 200),
        ("POST", "/api/auth/logout", "/api/auth/logout", user, None, 200),
        ("GET", "/api/openapi.json", "/api/openapi.json", {}, None, 200),
        ("GET", "/healthz", "/healthz", {}, None, 200),
        ("GET", "/readyz", "/readyz", {}, None, 200),
        ("GET", "/metrics", "/metrics", {}, None, 200),
    ]
    served = {rule.rule for rule in app.url_map.iter_rules()}
    for method, url, template, headers, body, status in calls:
        if not template.startswith("/api/") and template not in served:
            continue  # an ops probe this build does not serve
        response = client.open(url, method=method, json=body, headers=headers)
        assert response.status_code == status, (url, response.get_data(as_text=True))
        api_schema[template][method].validate_response(response)
    # u1: 50 + 100 claimed, -3 adjusted, the 50 voided; u2 is hidden.
    top = client.get("/api/score/top", headers=bearer(mint("u1"))).get_json()
    assert [(row["userId"], row["score"]) for row in top] == [("u1", 97)]


def test_catalog_limits_send_retry_after_as_documented(app, client, record, service_headers, document):
    """The document promises ``Retry-After`` on a 429; the catalog's cooldown sends it, matching ``retryAfter``."""
    assert "Retry-After" in document["paths"]["/api/actions/completions"]["post"]["responses"]["429"]["headers"]
    record("u1", "pass-quiz")
    response = client.post(
        "/api/actions/completions", json={"userId": "u1", "action": "pass-quiz"}, headers=service_headers
    )
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "action_cooldown"
    assert response.headers["Retry-After"] == str(response.get_json()["error"]["retryAfter"])
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.live
def test_production_server_answers_as_documented(live_stack, mint, service_headers, api_schema):
    """Under gunicorn (where the top list comes from the process's relay) the answers match the document too."""
    import requests

    served = requests.get(f"{live_stack}/api/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json()["paths"].keys() == api_schema.raw_schema["paths"].keys()
    user = bearer(mint("live-doc"))
    recorded = requests.post(
        f"{live_stack}/api/actions/completions",
        json={"userId": "live-doc", "action": "win-challenge"},
        headers=service_headers,
        timeout=10,
    )
    api_schema["/api/actions/completions"]["POST"].validate_response(recorded)
    claimed = requests.post(
        f"{live_stack}/api/action/do", json={"actionId": recorded.json()["actionId"]}, headers=user, timeout=10
    )
    api_schema["/api/action/do"]["POST"].validate_response(claimed)

    def top_showing_the_claim():
        top = requests.get(f"{live_stack}/api/score/top", headers=user, timeout=10)
        return top if top.status_code == 200 and any(row["userId"] == "live-doc" for row in top.json()) else None

    top = wait_until(top_showing_the_claim, timeout=10, interval=0.1, message="the claim never reached the top list")
    api_schema["/api/score/top"]["GET"].validate_response(top)
    refused = requests.post(f"{live_stack}/api/action/do", json={"actionId": "nope"}, headers=user, timeout=10)
    assert refused.status_code == 404
    api_schema["/api/action/do"]["POST"].validate_response(refused)
