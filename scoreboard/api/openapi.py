"""The OpenAPI 3.1 document, served at ``GET /api/openapi.json``.

Views declare what they take and answer with :func:`documented`; the document is built
from ``app.url_map`` and those declarations, with component schemas generated from the
same pydantic models ``parse_body`` validates with (pydantic emits JSON Schema 2020-12,
the dialect of OpenAPI 3.1). A route without a declaration is left out of the document,
and the test suite fails on it.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, TypeAdapter
from werkzeug.routing import IntegerConverter

from ..ops import health
from ..periods import ALL, KINDS
from ..security.tokens import MAX_TOKEN_BYTES, ROLES
from .schemas import BoardMessage, Error, Health, Ready

REF = "#/components/schemas/{model}"
BEARER = "bearerAuth"
# Who may call an operation: anyone, any valid token, the board's readers (a setting makes
# the board public), or a token holding one of these roles.
AUTH_KINDS = ("public", "token", "board", *ROLES)

# Default explanations of the errors every operation of a kind can answer.
ERRORS = {
    400: "`invalid_body`: the body is not a JSON object or fails validation; `problems` names each field.",
    401: "`token_missing`, `token_invalid`, `token_expired`, `token_revoked`: no usable Bearer token "
    "(`token_invalid` also for an `Authorization` header too large to be a token).",
    403: "`forbidden`: the token lacks the role this needs.",
    413: "`body_too_large`: the body is larger than `SCOREBOARD_MAX_BODY_BYTES`.",
    429: "`rate_limited`: too many requests from this address or caller; retry after `Retry-After` seconds.",
    503: "`database_unavailable`, `redis_unavailable`, `broker_unavailable`: a backing service is down; "
    "retry after `Retry-After` seconds.",
}
OVERSIZED_TOKEN = (
    f"`token_invalid`: an `Authorization` header or `token` parameter over {MAX_TOKEN_BYTES} bytes, "
    "refused on every endpoint."
)
ERROR_HEADERS = {
    401: {"WWW-Authenticate": "`Bearer` when the token is missing or unusable."},
    429: {"Retry-After": "Seconds to wait before retrying."},
    503: {"Retry-After": "Seconds to wait before retrying."},
}

WEBSOCKETS = {
    "/ws/scoreboard": {
        "summary": "The live board",
        "description": (
            "A WebSocket. On connect the server sends the current board as a `snapshot` message; after that "
            "one `update` message each time the top list changes, and only then. `version` only grows: ignore "
            "a message whose version is not above the one shown. Unless the board is public the handshake needs "
            "a credential: `?ticket=<ticket>` from `POST /api/socket-ticket` (what browsers use: they cannot set "
            "headers on a socket, and a ticket works once, within seconds, so a URL in a log opens nothing), or "
            "`Authorization: Bearer <jwt>`; `?token=<jwt>` still works for older clients. A credential, when "
            "given, must be valid even on a public board, and the socket then belongs to its token: it is closed "
            "with 4001 (`token expired`, `token revoked`) at the token's `exp` and within a second of its "
            "revocation; a socket opened without one on a public board never is. A refused handshake answers "
            "JSON like any error: 401 (`token_*`, `ticket_invalid`), 403 `origin_forbidden`, 429 "
            "`too_many_sockets` (per client IP, across every process), 400 `bad_period`. `?period=day|week|month` "
            "streams that period's board instead of the all-time one (its messages carry `period` and `key`; at "
            'midnight the new, empty period is broadcast). A client may send `{"type": "resync"}` to get a '
            'fresh snapshot, and, on a socket opened with a credential, `{"type": "watch"}`: from then on it also '
            'gets `{"type": "me", "version", "period", "rank", "score", "total"}` whenever the viewer\'s own '
            "rank, score or the board's size changed, at most once a second (without a credential the answer is "
            '`{"type": "error", "code": "sign_in_required"}`). Anything else closes the socket.'
        ),
        "parameters": [
            {
                "name": "ticket",
                "in": "query",
                "required": False,
                "description": "A ticket from `POST /api/socket-ticket`: single-use, valid for `expiresIn` seconds.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            },
            {
                "name": "period",
                "in": "query",
                "required": False,
                "description": "The board: `all` (the default), or the current `day`, ISO `week` or `month`.",
                "schema": {"type": "string", "enum": list(KINDS), "default": ALL},
            },
            {
                "name": "token",
                "in": "query",
                "required": False,
                "deprecated": True,
                "description": "The access token itself, for clients without tickets; prefer `ticket`.",
                "schema": {"type": "string", "maxLength": MAX_TOKEN_BYTES},
            },
        ],
        "closeCodes": {
            "1000": "normal close",
            "1001": "`server restarting`: the process is stopping; reconnect (another instance answers)",
            "1003": "`unsupported message`: the client sent something other than a resync or watch request",
            "1008": "`too many messages` (more than 10 client messages in 10 s), or `Ping/Pong timeout`",
            "1009": "a client frame over 4 KiB",
            "4001": "`token expired` or `token revoked`: the socket's token ended; get a fresh token and reconnect",
        },
        "message": BoardMessage,
    },
}


@dataclass(frozen=True)
class Reply:
    """One documented answer: a body type (a model, ``list[Model]``, any type pydantic knows, or None)."""

    body: Any = None
    description: str = ""
    media_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    required_headers: tuple = ()
    # OpenAPI links: what a client (and the stateful schemathesis run) can call next with this answer.
    links: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What one view takes and answers."""

    summary: str
    auth: str
    responses: dict
    body: type | None = None
    query: type | None = None
    errors: dict = field(default_factory=dict)
    tags: tuple = ()


def documented(summary, *, auth, responses, body=None, query=None, errors=None, tags=()):
    """Declare a view's OpenAPI operation; put it right under the route decorator.

    ``auth`` is one of :data:`AUTH_KINDS`; ``responses`` maps a status to a body type or a
    :class:`Reply`; ``body`` and ``query`` are pydantic models; ``errors`` maps a
    status to the codes it answers beyond the ones every operation of its kind answers.
    """
    if auth not in AUTH_KINDS:
        raise ValueError(f"auth must be one of {AUTH_KINDS}, not {auth!r}")
    operation = Operation(
        summary=summary,
        auth=auth,
        responses=dict(responses),
        body=body,
        query=query,
        errors=dict(errors or {}),
        tags=tuple(tags),
    )

    def decorator(view):
        """Attach the operation to the view."""
        view.__openapi__ = operation
        return view

    return decorator


def operation_of(view):
    """The :class:`Operation` declared on ``view`` or on any view it wraps; else None."""
    while view is not None:
        found = getattr(view, "__openapi__", None)
        if found is not None:
            return found
        view = getattr(view, "__wrapped__", None)
    return None


class _Components:
    """``components.schemas``, filled as operations refer to types."""

    def __init__(self):
        """No schemas yet."""
        self.schemas = {}

    def add(self, name, schema):
        """Register a component schema under ``name``, refusing a different one under the same name."""
        if self.schemas.setdefault(name, schema) != schema:
            # Two models with one name would silently describe one of them wrongly.
            raise ValueError(f"two different schemas are named {name!r}")

    def schema_for(self, tp, mode):
        """A JSON Schema for ``tp``: a ``$ref`` for models, inline for anything else."""
        schema = TypeAdapter(tp).json_schema(ref_template=REF, by_alias=True, mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, definition)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            self.add(tp.__name__, schema)
            return {"$ref": REF.format(model=tp.__name__)}
        return schema


def _parameters(model, where, components):
    """OpenAPI parameters from the fields of a pydantic model."""
    schema = model.model_json_schema(ref_template=REF, by_alias=True, mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        components.add(name, definition)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        param = {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _path_of(rule):
    """The OpenAPI path template of a Werkzeug rule: ``/users/<user_id>`` -> ``/users/{user_id}``."""
    return _RULE_ARG.sub(r"{\1}", rule.rule)


def _path_params(rule):
    """The rule's path parameters: what each converter accepts."""
    params = []
    for name in sorted(rule.arguments):
        converter = rule._converters.get(name)
        if isinstance(converter, IntegerConverter):
            schema = {"type": "integer", "minimum": 0}
        else:
            # Werkzeug's default converter: one non-empty segment without '/'.
            schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _security(auth, app):
    """The operation's ``security``: roles are listed as the scheme's required roles, as OpenAPI 3.1 allows."""
    if auth == "public" or (auth == "board" and app.config["PUBLIC_BOARD"]):
        return []
    if auth in ROLES:
        return [{BEARER: [auth]}]
    return [{BEARER: []}]


def _headers(headers, required=()):
    """OpenAPI header objects: every header is a string."""
    return {
        name: {"description": text, "required": name in required, "schema": {"type": "string"}}
        for name, text in headers.items()
    }


def _error_statuses(operation, app):
    """Each error status the operation can answer, with its explanation."""
    errors = {429: ERRORS[429], 503: ERRORS[503]}
    if operation.body is not None:
        errors[400] = ERRORS[400]
        errors[413] = ERRORS[413]
    # The oversized-token guard runs before every view, public ones included.
    errors[401] = ERRORS[401] if _security(operation.auth, app) else OVERSIZED_TOKEN
    if operation.auth in ROLES:
        errors[403] = ERRORS[403]
    for status, text in operation.errors.items():
        errors[status] = f"{errors[status]} {text}" if status in errors else text
    return errors


def _responses(operation, app, components):
    """The ``responses`` object: the declared answers and every error, all errors with the Error schema."""
    out = {}
    for status, reply in sorted(operation.responses.items()):
        if not isinstance(reply, Reply):
            reply = Reply(body=reply)
        entry = {"description": reply.description or "OK"}
        if reply.body is not None:
            schema = (
                {"type": "string"}
                if reply.media_type.startswith("text/")
                else components.schema_for(reply.body, "serialization")
            )
            entry["content"] = {reply.media_type: {"schema": schema}}
        if reply.headers:
            entry["headers"] = _headers(reply.headers, reply.required_headers)
        if reply.links:
            entry["links"] = reply.links
        out[str(status)] = entry
    error_ref = components.schema_for(Error, "serialization")
    for status, text in sorted(_error_statuses(operation, app).items()):
        entry = {"description": text, "content": {"application/json": {"schema": error_ref}}}
        if status in ERROR_HEADERS:
            entry["headers"] = _headers(ERROR_HEADERS[status])
        out[str(status)] = entry
    return out


def _operation(rule, method, view, operation, app, components, operation_ids):
    """The OpenAPI operation object of one route and method."""
    op_id = rule.endpoint if rule.endpoint not in operation_ids else f"{rule.endpoint}.{method.lower()}"
    operation_ids.add(op_id)
    params = _path_params(rule)
    if operation.query is not None:
        params += _parameters(operation.query, "query", components)
    result = {
        "operationId": op_id,
        "summary": operation.summary,
        "description": (view.__doc__ or "").strip(),
        "tags": list(operation.tags) or [rule.endpoint.split(".")[0]],
        "security": _security(operation.auth, app),
        "responses": _responses(operation, app, components),
    }
    if operation.auth in ROLES:
        result["x-roles"] = [operation.auth]
    if params:
        result["parameters"] = params
    if operation.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": components.schema_for(operation.body, "validation")}},
        }
    return result


def undocumented_routes(app):
    """``(rule, method)`` of every HTTP route that has no :func:`documented` declaration."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.websocket or rule.endpoint == "static":
            continue
        if operation_of(app.view_functions[rule.endpoint]) is None:
            missing += [(rule.rule, m) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return missing


def build_document(app):
    """The whole OpenAPI 3.1 document of ``app``'s documented routes."""
    components = _Components()
    paths = {}
    operation_ids = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.websocket or rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        operation = operation_of(view)
        if operation is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(_path_of(rule), {})[method.lower()] = _operation(
                rule, method, view, operation, app, components, operation_ids
            )

    websockets = {}
    for rule in app.url_map.iter_rules():
        if rule.websocket and rule.rule in WEBSOCKETS:
            spec = WEBSOCKETS[rule.rule]
            websockets[rule.rule] = {
                "summary": spec["summary"],
                "description": spec["description"],
                "security": _security("board", app),
                "parameters": spec["parameters"],
                "closeCodes": spec["closeCodes"],
                "message": components.schema_for(spec["message"], "serialization"),
            }

    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "scoreboard",
            "version": "1",
            "description": (
                "A live top-10 scoreboard. The site's trusted backend records completions "
                "(`POST /api/actions/completions`, role `service`); the user's browser claims each once "
                "(`POST /api/action/do`); `GET /api/score/top` and the `/ws/scoreboard` WebSocket show the board. "
                'Every error is `{"error": {"code", "message", ...}}` with a stable `code`, and a refused '
                "request changes nothing. WebSockets, which OpenAPI cannot describe as operations, are listed "
                "under `x-websockets` with the schema of their messages."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`sub` is the user id; the `roles` claim (a list) may hold "
                    + ", ".join(f"`{r}`" for r in ROLES)
                    + ".",
                },
            },
        },
        "x-websockets": websockets,
    }


# The ops probes live below the API (ops imports nothing of it): their operations are attached here.
documented("Liveness: the process answers", auth="public", tags=("ops",), responses={200: Health})(health.healthz)
documented(
    "Readiness: the database, Redis and the broker answer",
    auth="public",
    tags=("ops",),
    responses={200: Ready},
    errors={503: "Not ready: `failing` lists the services that did not answer and `checks` the state of each."},
)(health.readyz)
documented(
    "Prometheus metrics",
    auth="public",
    tags=("ops",),
    responses={200: Reply(str, "Every metric, in the Prometheus text exposition format.", media_type="text/plain")},
)(health.prometheus_metrics)

bp = Blueprint("openapi", __name__, url_prefix="/api")


@bp.get("/openapi.json")
@documented(
    "This OpenAPI document",
    auth="public",
    tags=("meta",),
    responses={200: Reply(dict[str, Any], "The OpenAPI 3.1 document of this service.")},
)
def openapi_json():
    """The OpenAPI 3.1 document of every endpoint."""
    app = current_app._get_current_object()
    # Routes cannot be added once the app serves requests, so one build per process is enough.
    document = app.extensions.get("scoreboard.openapi")
    if document is None:
        document = app.extensions["scoreboard.openapi"] = build_document(app)
    return jsonify(document)
