"""Property-based fuzzing (Hypothesis) of every endpoint's body, headers and path.

Whatever arrives, the service never answers 5xx; every 4xx is a JSON error with a stable
``code`` and leaves every database row as it was; a 2xx has the documented shape. The
requests go through the in-process app to the real PostgreSQL and Redis.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy import update

from scoreboard.api.openapi import Reply, operation_of
from scoreboard.api.schemas import (
    AdjustBody,
    ClaimBody,
    ClearSuspectBody,
    CompletionBody,
    ConfirmSuspectBody,
    LoginBody,
    RevokeBody,
    StatusBody,
    UserRevokeBody,
    VoidBody,
)
from scoreboard.extensions import db
from tests.support import TABLES, bearer, snapshot

SECRET = os.environ["SCOREBOARD_JWT_SECRET_KEY"]
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# Moderate counts: the whole file runs in well under two minutes on two cores.
FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# --- strategies -----------------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        "\uffff",
        "\u202e",
        "\ufeff",
        "💥" * 20,
        "a\nb",
        "\r\n",
        "../../etc/passwd",
        "%00",
        "%2e%2e%2f",
        "' OR '1'='1",
        '"; DROP TABLE users; --',
        "<script>",
        "{{7*7}}",
        "${jndi:x}",
        "a" * 64,
        "a" * 65,
        "a" * 129,
        "a" * 501,
        "a" * 5000,
        "\\",
        "null",
        "true",
        "0",
        "-1",
        "NaN",
    ]
)
STRINGS = st.one_of(st.text(max_size=40), NASTY)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.sampled_from([0, 1, -1, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -0.0, 0.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4), max_leaves=12
)
# What an HTTP header can carry: latin-1, no line breaks or NUL.
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


def plausible(prop):
    """Values a field's JSON Schema accepts, so some examples get past validation."""
    if "pattern" in prop:
        return st.from_regex(prop["pattern"], fullmatch=True).filter(
            lambda s: prop.get("minLength", 0) <= len(s) <= prop.get("maxLength", 10**6)
        )
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    if prop.get("type") == "integer":
        return st.integers(prop.get("minimum", -(10**6)), prop.get("maximum", 10**6))
    if prop.get("type") == "string":
        return st.text(min_size=prop.get("minLength", 0), max_size=min(prop.get("maxLength", 80), 80))
    options = [plausible(p) for p in prop.get("anyOf", []) if p.get("type") != "null"]
    return st.one_of(*options, st.none()) if options else JSON


def bodies(model, good=None):
    """Arbitrary JSON, or objects with the model's real field names (plus stray ones) holding anything."""
    properties = model.model_json_schema(by_alias=True)["properties"]
    fields = {
        name: st.one_of(JSON, NASTY, plausible(prop), *([good[name]] if good and name in good else []))
        for name, prop in properties.items()
    }
    objects = st.builds(
        lambda known, stray: {**stray, **known},
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(STRINGS, JSON, max_size=2) | st.just({}),
    )
    return st.one_of(JSON, objects, objects)


def valid_bodies(model, good=None):
    """Bodies that pass validation: the real fields only, each with a plausible value."""
    schema = model.model_json_schema(by_alias=True)
    fields = {
        name: good[name] if good and name in good else plausible(prop) for name, prop in schema["properties"].items()
    }
    return st.fixed_dictionaries(
        {n: s for n, s in fields.items() if n in schema.get("required", [])},
        optional={n: s for n, s in fields.items() if n not in schema.get("required", [])},
    )


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 8000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting, under the body limit
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(16 * 1024 - 16, 64 * 1024).map(lambda n: b'{"x":"' + b"a" * n + b'"}'),  # around the limit
    st.sampled_from(
        [
            b"",
            b"null",
            b'"text"',
            b"{",
            b"}",
            b"[]",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"1e999999",
            b"1" * 5000,
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"a":1,"a":2}',
            b'{"actionId": "\\ud800"}',
            b'{"actionId": "a\\u0000b"}',
            b'{"username": "a\\u0000", "password": "x"}',
            b'{"reason": "\\udfff abc"}',
            b'{"actionId": ["x"]}',
            b'{"delta": 1e400, "reason": "abc"}',
            b'{"delta": 10000000000000000000000, "reason": "abc"}',
            b'{"userId": "u1", "action": "complete-lesson", "points": 1000000}',
        ]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/json; charset=nonsense",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/merge-patch+json",
        "",
        None,
    ]
)


def b64(data):
    """Unpadded base64url, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header, payload, key):
    """A JWT with any header and payload, HMAC-SHA256-signed with ``key`` (``None``: unsigned)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    if key is None:
        return head + "."
    return head + "." + b64(hmac.new(key.encode(), head.encode(), hashlib.sha256).digest())


TIMES = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda d: int(time.time()) + d), st.integers(), st.floats(), STRINGS, st.none()
)
CLAIMS = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "sub": st.one_of(
                st.sampled_from(["u1", "root", "site"]),
                STRINGS,
                st.integers(),
                st.none(),
                st.lists(STRINGS, max_size=2),
            ),
            "roles": st.one_of(
                st.lists(st.sampled_from(["service", "admin", "user", ""]) | STRINGS, max_size=3),
                STRINGS,
                st.integers(),
                st.none(),
                st.dictionaries(STRINGS, STRINGS, max_size=2),
            ),
            "type": st.sampled_from(["access", "refresh", "", "ACCESS"]) | st.integers(),
            "exp": TIMES,
            "nbf": TIMES,
            "iat": TIMES,
            "jti": st.one_of(STRINGS, st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
            "fresh": SCALARS,
            "iss": STRINGS,
            "aud": STRINGS | st.lists(STRINGS, max_size=2),
        },
    ),
    st.dictionaries(STRINGS, JSON, max_size=2),
)
JWT_HEADERS = st.one_of(
    st.just({"alg": "HS256", "typ": "JWT"}),
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["HS256", "HS512", "RS256", "none", "None", "", "hs256"])},
        optional={
            "typ": STRINGS,
            "kid": STRINGS | st.integers(),
            "crit": st.lists(STRINGS),
            "jku": STRINGS,
            "x5u": STRINGS,
        },
    ),
)
WRONG_KEY = "another-secret-another-secret-another-secret"


@st.composite
def authorizations(draw, mint):
    """``(Authorization value or None, forged)``: ``forged`` ones must never be accepted."""
    now = int(time.time())
    good_claims = {
        "sub": "u1",
        "type": "access",
        "jti": "j",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": ["admin", "service"],
    }
    kind = draw(
        st.sampled_from(
            [
                "none",
                "garbage",
                "bearer-garbage",
                "random-claims",
                "wrong-key",
                "unsigned",
                "tampered",
                "scheme",
                "oversized",
                "minted",
            ]
        )
    )
    if kind == "none":
        return None, True
    if kind == "garbage":
        return draw(HEADER_TEXT), True
    if kind == "bearer-garbage":
        return "Bearer " + draw(HEADER_TEXT), True
    if kind == "random-claims":
        return "Bearer " + sign(draw(JWT_HEADERS), draw(CLAIMS), SECRET), False
    if kind == "wrong-key":
        return "Bearer " + sign({"alg": "HS256", "typ": "JWT"}, {**good_claims, **draw(CLAIMS)}, WRONG_KEY), True
    if kind == "unsigned":
        alg = draw(st.sampled_from(["none", "None", "NONE", "HS256"]))
        return "Bearer " + sign({"alg": alg, "typ": "JWT"}, good_claims, None), True
    if kind == "tampered":
        token = sign({"alg": "HS256", "typ": "JWT"}, good_claims, SECRET)
        head, payload, signature = token.split(".")
        forged_payload = b64(json.dumps({**good_claims, "sub": draw(STRINGS)}).encode())
        return "Bearer " + ".".join(
            draw(
                st.sampled_from(
                    [(head, forged_payload, signature), (head, payload, signature[:-2]), (head, payload, "")]
                )
            )
        ), True
    if kind == "scheme":
        scheme = draw(st.sampled_from(["bearer", "BEARER", "Basic", "Token", "Bearer  ", "Bearer\t", ""]))
        return f"{scheme} {mint('u1', 'admin', 'service')}", False
    if kind == "oversized":
        return "Bearer " + "a" * draw(st.integers(4000, 70000)), True
    return "Bearer " + mint(
        draw(st.sampled_from(["u1", "root", "site"])),
        *draw(st.lists(st.sampled_from(["admin", "service"]), unique=True)),
    ), False


OTHER_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": CONTENT_TYPES.filter(bool),
        "X-Forwarded-For": HEADER_TEXT,
        "User-Agent": HEADER_TEXT | st.integers(200, 3000).map(lambda n: "ü" * n),
        "X-Request-ID": HEADER_TEXT,
        "Origin": HEADER_TEXT,
        "Accept": HEADER_TEXT,
        "Content-Length": st.integers(-5, 10**9).map(str) | HEADER_TEXT,
    },
)

URL_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
HOSTILE = st.sampled_from(["%00", "a%00b", "%ff", "%2F", "..", "%2e%2e", "%", "💥", "a" * 300, "%20", "u1%00"])
SEGMENTS = st.one_of(
    HOSTILE,
    st.text(alphabet=URL_SAFE, max_size=12),
    st.sampled_from(
        [
            ".",
            "..",
            "%2e%2e",
            "%2F",
            "%00",
            "%ff",
            "%",
            "%%",
            "%zz",
            "~",
            "users",
            "admin",
            "u1",
            "score",
            "top",
            "action",
            "do",
            "completions",
            "void",
            "tokens",
            "revoke",
            "auth",
            "login",
            "<x>",
            "{user_id}",
            "a" * 300,
            "%F0%9F%92%A5",
            ";",
            "ü",
            "💥",
            "\\",
            "openapi.json",
        ]
    ),
    st.binary(max_size=6).map(lambda b: quote(b, safe="")),
    st.text(max_size=6).map(lambda t: quote(t, safe="")),
)
QUERIES = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.sampled_from(["limit", "token", "x", ""]), HEADER_TEXT), max_size=3).map(
        lambda pairs: "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    ),
)

# --- the world every example runs against ---------------------------------------------------


@pytest.fixture
def world(app, mint, record, record_and_claim, service_headers):
    """Real rows to aim at: u1 with a pending and a claimed completion, u2's pending one (u2 held as a suspect),
    a local account."""
    from scoreboard.models import Suspect, SuspectStatus, User, UserStatus
    from scoreboard.security.passwords import hash_password

    claimed = record_and_claim("u1", "complete-lesson")["actionId"]
    pending = record("u1", "win-challenge")["actionId"]
    others = record("u2", "complete-lesson")["actionId"]
    record("alice", "complete-lesson")
    with app.app_context():
        db.session.execute(update(User).where(User.id == "alice").values(password_hash=hash_password("alice-pw")))
        db.session.execute(update(User).where(User.id == "u2").values(status=UserStatus.HELD))
        db.session.add(
            Suspect(user_id="u2", status=SuspectStatus.HELD, anomaly_score=0.9, previous_status=UserStatus.ACTIVE)
        )
        db.session.commit()
    return {
        "claimed": claimed,
        "pending": pending,
        "others": others,
        "headers": {
            "user": bearer(mint("u1")),
            "service": service_headers,
            "admin": bearer(mint("root", "admin")),
            None: {},
        },
    }


def check(app, client, method, url, **kwargs):
    """Send one request; assert no 5xx, and that a 4xx is a JSON error that changed no row."""
    before = snapshot(app)
    response = client.open(url, method=method, **kwargs)
    assert response.status_code < 500, (method, url, response.get_data(as_text=True)[:500])
    if response.status_code >= 400:
        if method != "HEAD":
            body = response.get_json(silent=True)
            assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.get_data()[:300]
            assert CODE.match(body["error"]["code"]) and body["error"]["message"]
        assert snapshot(app) == before, (method, url, response.status_code)
    return response


def assert_documented_shape(app, url, method, response):
    """A 2xx body validates against the response model the endpoint documents for that status."""
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(url.split("?")[0], method=method)
    reply = operation_of(app.view_functions[endpoint]).responses[response.status_code]
    body_type = reply.body if isinstance(reply, Reply) else reply
    TypeAdapter(body_type).validate_python(response.get_json())


# (rule, body model, whose token, values that reach past validation)
BODY_ENDPOINTS = [
    (
        "/api/auth/login",
        LoginBody,
        None,
        lambda w: {
            "username": st.sampled_from(["alice", "u1", "nobody"]),
            "password": st.sampled_from(["alice-pw", "x"]),
        },
    ),
    (
        "/api/action/do",
        ClaimBody,
        "user",
        lambda w: {"actionId": st.sampled_from([w["pending"], w["claimed"], w["others"]])},
    ),
    (
        "/api/actions/completions",
        CompletionBody,
        "service",
        lambda w: {
            "userId": st.sampled_from(["u1", "u2", "u3"]),
            "action": st.sampled_from(["complete-lesson", "pass-quiz", "daily-login", "nope"]),
            "ref": st.sampled_from(["r1", "r2"]),
        },
    ),
    ("/api/admin/users/<user_id>/status", StatusBody, "admin", lambda w: {}),
    ("/api/admin/users/<user_id>/adjustments", AdjustBody, "admin", lambda w: {}),
    ("/api/admin/completions/<action_id>/void", VoidBody, "admin", lambda w: {}),
    ("/api/admin/tokens/revoke", RevokeBody, "admin", lambda w: {}),
    ("/api/admin/users/<user_id>/tokens/revoke", UserRevokeBody, "admin", lambda w: {}),
    ("/api/admin/suspects/<user_id>/clear", ClearSuspectBody, "admin", lambda w: {}),
    ("/api/admin/suspects/<user_id>/confirm", ConfirmSuspectBody, "admin", lambda w: {}),
]


def concrete(rule, world, data):
    """The rule with its arguments filled with real ids (or, sometimes, unknown ones)."""
    return rule.replace("<user_id>", data.draw(st.sampled_from(["u1", "u2", "ghost"]), label="user_id")).replace(
        "<action_id>", data.draw(st.sampled_from([world["pending"], world["claimed"], "ghost"]), label="action_id")
    )


@pytest.mark.unit
def test_every_body_endpoint_is_fuzzed(offline_app):
    """A new endpoint that takes a body must join the fuzzing tables."""
    views = offline_app.view_functions
    documented = {
        (rule.rule, operation_of(views[rule.endpoint]).body)
        for rule in offline_app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and not rule.websocket and operation_of(views[rule.endpoint]).body is not None
    }
    assert documented == {(rule, model) for rule, model, _, _ in BODY_ENDPOINTS}


@pytest.mark.unit
def test_snapshots_see_every_table():
    """ "Nothing changed" checks compare every table the models define, but the log of refused claims."""
    assert set(TABLES) | {"claim_refusals"} == set(db.metadata.tables)


# --- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule,model,role,good", BODY_ENDPOINTS, ids=[e[0] for e in BODY_ENDPOINTS])
@FUZZ
@given(data=st.data())
def test_fuzzed_json_bodies(app, client, world, rule, model, role, good, data):
    """Any JSON body: no 5xx, 4xx changes nothing, only a valid body gets through, 2xx as documented."""
    url = concrete(rule, world, data)
    body = data.draw(st.one_of(bodies(model, good(world)), valid_bodies(model, good(world))), label="body")
    response = check(app, client, "POST", url, json=body, headers=world["headers"][role])
    if response.status_code < 300:
        assert_documented_shape(app, url, "POST", response)
        assert model.model_validate(body)  # only a body the model accepts gets through
    if rule == "/api/action/do" and response.status_code < 300:
        assert body == {"actionId": world["pending"]}
    if rule == "/api/auth/login" and response.status_code < 300:
        assert (body["username"], body["password"]) == ("alice", "alice-pw")


@pytest.mark.parametrize("rule,model,role,good", BODY_ENDPOINTS, ids=[e[0] for e in BODY_ENDPOINTS])
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_fuzzed_raw_bodies(app, client, world, rule, model, role, good, data):
    """Any bytes under any content type, deep nesting and oversize included: a clean 4xx."""
    url = concrete(rule, world, data)
    raw = data.draw(RAW_BODIES, label="raw")
    content_type = data.draw(CONTENT_TYPES, label="content_type")
    response = check(app, client, "POST", url, data=raw, content_type=content_type, headers=world["headers"][role])
    if len(raw) > app.config["MAX_CONTENT_LENGTH"]:
        # A JSON body over the limit is refused unread; any other type is never read at all.
        assert response.status_code in ((401, 403, 413) if "json" in (content_type or "") else (400, 401, 403, 413))


def test_deep_nesting_is_a_400_not_a_crash(app, client, world):
    """A body nested deeper than the JSON parser recurses is refused like any bad body."""
    for raw in (b"[" * 8000 + b"]" * 8000, b'{"a":' * 2500 + b"1" + b"}" * 2500):
        assert len(raw) <= app.config["MAX_CONTENT_LENGTH"]
        response = check(
            app,
            client,
            "POST",
            "/api/action/do",
            data=raw,
            content_type="application/json",
            headers=world["headers"]["user"],
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "invalid_body"


def test_nul_characters_are_refused_before_the_database(app, client, world):
    """PostgreSQL cannot store NUL: such strings are a 400, not a failing query."""
    for url, body, role in (
        ("/api/auth/login", {"username": "a\x00", "password": "x"}, None),
        ("/api/actions/completions", {"userId": "u1", "action": "complete-lesson", "ref": "r\x00"}, "service"),
        ("/api/admin/users/u1/status", {"status": "hidden", "reason": "ab\x00c"}, "admin"),
    ):
        response = check(app, client, "POST", url, json=body, headers=world["headers"][role])
        assert response.status_code == 400
        assert response.get_json()["error"]["problems"][0]["problem"].endswith("must not contain NUL characters")


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), None, [1], {"a": 1}], ids=repr)
def test_unreadable_time_claims_are_a_401(app, client, world, claim, value):
    """A correctly signed token whose exp/nbf/iat is not a number PyJWT can read is refused, not a crash."""
    now = int(time.time())
    claims = {"sub": "u1", "type": "access", "jti": "j", "iat": now, "nbf": now, "exp": now + 300, claim: value}
    token = sign({"alg": "HS256", "typ": "JWT"}, claims, SECRET)
    for method, url in (("GET", "/api/actions"), ("GET", "/api/admin/board"), ("GET", "/api/score/top")):
        response = check(app, client, method, url, headers=bearer(token))
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "token_invalid"


def api_operations(app):
    """``(rule, method, operation)`` of every documented route under /api."""
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.rule.startswith("/api/") and not rule.websocket:
            operation = operation_of(app.view_functions[rule.endpoint])
            found += [(rule.rule, method, operation) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fuzzed_headers(app, client, mint, world, data):
    """Any Authorization and other headers: forged or oversized tokens are 401 everywhere secured."""
    rule, method, operation = data.draw(st.sampled_from(api_operations(app)), label="operation")
    url = concrete(rule, world, data)
    authorization, forged = data.draw(authorizations(mint), label="authorization")
    headers = data.draw(OTHER_HEADERS, label="headers")
    if authorization is not None:
        headers["Authorization"] = authorization
    kwargs = {"headers": headers}
    if operation.body is not None:
        # A well-formed body, so whatever is refused is refused for the headers.
        kwargs["data"] = json.dumps(data.draw(valid_bodies(operation.body), label="body"))
        headers.setdefault("Content-Type", "application/json")
        headers.pop("Content-Length", None)
    response = check(app, client, method, url, **kwargs)
    secured = operation.auth != "public"
    if secured and forged:
        assert response.status_code == 401, (authorization, response.get_json())
    if authorization and len(authorization) > 4096:
        assert response.status_code == 401


# --- paths ------------------------------------------------------------------------------------

# The token each kind of operation expects.
ROLE_OF = {"public": None, "token": "user", "board": "user", "service": "service", "admin": "admin"}


@st.composite
def requests(draw, app):
    """``(method, path, role)``: mostly real routes with their arguments replaced by anything, called with the
    method and token they expect (so the arguments reach the view); else random paths, methods and tokens."""
    if draw(st.integers(0, 9)) < 7:
        rule, method, operation = draw(st.sampled_from(api_operations(app)))
        path = re.sub(r"<[^>]+>", lambda _: draw(SEGMENTS.filter(bool)), rule)
        role = ROLE_OF[operation.auth]
        if draw(st.integers(0, 4)) == 0:
            method, role = draw(st.sampled_from(METHODS)), draw(st.sampled_from(list(ROLE_OF.values())))
    else:
        path = "/api/" + "/".join(draw(st.lists(SEGMENTS, max_size=5)))
        method, role = draw(st.sampled_from(METHODS)), draw(st.sampled_from(list(ROLE_OF.values())))
    return method, path + draw(st.sampled_from(["", "", "/", "//", "/."])) + draw(QUERIES), role


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_fuzzed_paths(app, client, world, data):
    """Random paths, methods and tokens under /api/: never a 5xx, every 4xx a JSON error."""
    method, path, role = data.draw(requests(app), label="request")
    body = data.draw(st.none() | JSON, label="body")
    kwargs = {"headers": world["headers"][role]}
    if body is not None:
        kwargs["json"] = body
    check(app, client, method, path, **kwargs)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_fuzzed_path_arguments(app, client, world, data):
    """Every route argument gets hostile values, with the method, token and a body the route accepts."""
    rule, method, operation = data.draw(
        st.sampled_from([op for op in api_operations(app) if "<" in op[0]]), label="operation"
    )
    path = re.sub(r"<[^>]+>", lambda _: data.draw(HOSTILE | SEGMENTS.filter(bool), label="argument"), rule)
    kwargs = {"headers": world["headers"][ROLE_OF[operation.auth]]}
    if operation.body is not None:
        kwargs["json"] = data.draw(valid_bodies(operation.body), label="body")
    check(app, client, method, path, **kwargs)


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/users/%00",
        "/api/admin/users/u1%00",
        "/api/admin/users/%00/status",
        "/api/admin/completions/a%00b/void",
        "/api/score/top%00",
    ],
)
def test_nul_in_a_path_is_a_404(app, client, world, path):
    """A path with a NUL names nothing, whoever asks: 404, not a query PostgreSQL refuses."""
    for method in ("GET", "POST"):
        response = check(
            app, client, method, path, json={"status": "hidden", "reason": "abcd"}, headers=world["headers"]["admin"]
        )
        assert response.status_code == 404
