"""Flask extensions, created unbound here and bound to the app in ``create_app``.

The service's own per-app objects (the stores, the in-memory board and revocation copies,
the relay) live in ``app.extensions`` too; each has one accessor in the module that owns it.

The limiter is Flask-Limiter's with one change, :class:`PlannedLimiter`: each endpoint's limits are resolved
once instead of on every request (Flask-Limiter's generic evaluation was a third of a top-list request's CPU
and 44% of a claim's); the limits are still declared, configured and counted through Flask-Limiter.
"""

from __future__ import annotations

from typing import NamedTuple

from celery import Celery
from flask import Flask, current_app, request
from flask.globals import request_ctx
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_qualified_name, get_remote_address
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Stable constraint names so Alembic migrations read the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# app.extensions[PLANS]: {(endpoint, callable name, before_request?): _Plan}, see PlannedLimiter.
PLANS = "scoreboard_limit_plans"


class _Plan(NamedTuple):
    """One check's limits as Flask-Limiter resolved them: (limit, key function, scope) in its order."""

    usable: bool  # False: Flask-Limiter's own evaluation does this check
    providers: tuple  # (callable, the string it returned): the plan holds while each returns the same
    steps: tuple


class PlannedLimiter(Limiter):
    """Flask-Limiter with each endpoint's limits resolved once, then counted through the same strategy.

    Flask-Limiter evaluates a request's limits afresh twice per decorated request (before_request, then the
    route's decorator): the view's qualified name, the limit manager's resolution, exemption scopes, ordered
    sets, a RuntimeLimit per window and its scope and key. Measured in process (``python -m bench.app_cost``,
    µs of CPU per request, limits on / off): /healthz 208 / 139 although it is exempt, the top list 370 / 220,
    a claim 1194 / 811; about a third of a top-list request and 44% of a claim was that evaluation, not Redis.

    Here the first request to an endpoint keeps what Flask-Limiter's own ``resolve_limits`` answered for it
    (per app, in ``app.extensions``, and per string each limit provider returned: a changed setting builds it
    again), and later requests only call each limit's key function and the strategy's ``hit`` with exactly the
    arguments Flask-Limiter passes (same Redis keys, same order, so the one-trip windows, the leases and the
    totals across processes are unchanged). A refusal fills the request's limiter context as Flask-Limiter does
    (``current_limit`` for the 429's headers). Anything this does not reproduce goes to Flask-Limiter's own
    evaluation: headers on every response, the in-memory fallback while storage is down (and its recovery),
    default, blueprint or meta limits, request filters, limits with methods, per-method scopes, callable costs
    or scopes, ``exempt_when``, ``deduct_when`` or ``on_breach``.
    """

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        """Count the request's planned limits; Flask-Limiter's own check when there is no plan."""
        # Endpoint hints appear at request time (a limit used as a context manager): they change what resolves.
        hinted = self.limit_manager._endpoint_hints
        if not (self.enabled and self.initialized) or self._headers_enabled or self._storage_dead or hinted:
            return super()._check_request_limit(callable_name, in_middleware)
        app = current_app._get_current_object()
        plans = app.extensions.get(PLANS)
        if plans is None:
            plans = app.extensions[PLANS] = {}
        endpoint = self._request_identifier()
        plan = plans.get((endpoint, callable_name, in_middleware))
        if plan is None or any(provider() != text for provider, text in plan.providers):
            plan = self._plan(app, endpoint, callable_name, in_middleware)
            plans[(endpoint, callable_name, in_middleware)] = plan
        if not plan.usable:
            return super()._check_request_limit(callable_name, in_middleware)
        if not plan.steps:
            # As Flask-Limiter: a check with no limits leaves no current limit (only where a context exists).
            contexts = getattr(request_ctx, "_limiter_request_context", None)
            if contexts is not None and self in contexts:
                contexts[self].view_rate_limit, contexts[self].view_rate_limits = None, []
            return None
        try:
            self._count(plan, endpoint)
        except RateLimitExceeded:
            raise
        except Exception:
            # What Flask-Limiter does on a storage error: count in memory from now on (it checks for recovery).
            if self._in_memory_fallback_enabled and not self._storage_dead:
                self.logger.warning("Rate limit storage unreachable - falling back to in-memory storage")
                self._storage_dead = True
                self.context.seen_limits.clear()
                return super()._check_request_limit(callable_name, in_middleware)
            if not self._swallow_errors:
                raise
            self.logger.exception("Failed to rate limit. Swallowing error")
        return None

    def _count(self, plan: _Plan, endpoint: str) -> None:
        """Hit each planned window in Flask-Limiter's order; on a refusal, set the context and raise."""
        strategy = self.limiter
        prefix = self._key_prefix
        view_limits = []
        breached = None
        keys: dict = {}  # one call of each key function per check (a limit string's windows share theirs)
        for limit, key_func, scope in plan.steps:
            key = keys.get(key_func)
            if key is None:
                key = keys[key_func] = key_func()
            if not key:
                self.logger.error(f"Skipping limit: {limit.limit}. Empty value found in parameters.")
                continue
            args = [prefix, key, scope] if prefix else [key, scope]
            view_limits.append((limit, args))
            if not strategy.hit(limit.limit, *args, cost=limit.cost):
                self.logger.info("ratelimit %s (%s) exceeded at endpoint: %s", limit.limit, key, scope)
                breached = limit
                break
        context = self.context
        context.view_rate_limits = [RequestLimit(self, lim.limit, args, False, lim.shared) for lim, args in view_limits]
        if breached is not None:
            context.view_rate_limits[-1].breached = True
            context.view_rate_limit = context.view_rate_limits[-1]
            raise RateLimitExceeded(breached)
        explicit = [limit for limit in context.view_rate_limits if not limit.shared]
        context.view_rate_limit = (explicit or context.view_rate_limits or [None])[0]

    def _plan(self, app: Flask, endpoint: str, callable_name: str | None, in_middleware: bool) -> _Plan:
        """What Flask-Limiter resolves for this check, or an unusable plan where it does more than count."""
        manager = self.limit_manager
        unusual = (
            manager._default_limits
            or manager._blueprint_limits
            or self._meta_limits
            or self._request_filters
            or self._on_breach
            or not self._fail_on_first_breach
        )
        if unusual:
            return _Plan(False, (), ())
        if not endpoint or endpoint.split(".")[-1] == "static":
            return _Plan(True, (), ())
        view = app.view_functions.get(endpoint)
        name = callable_name or (get_qualified_name(view) if view else "")
        groups = [*(manager._application_limits if in_middleware else ()), *manager._decorated_limits.get(name, ())]
        providers = tuple((g.limit_provider, g.limit_provider()) for g in groups if callable(g.limit_provider))
        defaults, decorated = manager.resolve_limits(
            app, endpoint, request.blueprint, name, in_middleware, name in self._marked_for_limiting
        )
        steps = []
        for limit in sorted([*defaults, *decorated], key=lambda x: x.limit):
            plain = not (limit.exempt_when or limit.methods is not None or limit.per_method or limit.deduct_when)
            if not plain or limit.on_breach or limit.meta_limits or callable(limit.cost) or callable(limit.scope):
                return _Plan(False, providers, ())
            steps.append((limit, limit.key_func, limit.scope_for(endpoint, None)))
        return _Plan(True, providers, tuple(steps))


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
jwt = JWTManager()
# The per-IP limits read from each app's config when counted: given as a string, Flask-Limiter would keep the
# first app's for every app the process builds (tests build many, with their own limits).
limiter = PlannedLimiter(
    key_func=get_remote_address, application_limits=[lambda: current_app.config.get("RATELIMIT_APPLICATION") or ""]
)
sock = Sock()


def celery_app(app=None) -> Celery:
    """The Celery app bound to ``app`` (default: the current Flask app) by ``celery_init_app``."""
    return (app or current_app).extensions["celery"]
