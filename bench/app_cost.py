"""The app's own CPU per request, in process: what each request costs before any server, socket or load generator.

``python -m bench.app_cost`` builds the production app twice on one bench database
(``scoreboard_bench_app_cost``, made fresh with the bench's 1,000 users), once with the rate limits on
(the bench's windows, ``stack.RATE_LIMITS``) and once with them off, and calls each app's WSGI callable
directly with prepared environments: ``GET /healthz``, the top-10 GET with a player's token, and a claim
of a completion recorded beforehand (a pool of pending completions, as every bench phase records them).
Logs are the production format (JSON at INFO, written to /dev/null: formatted, not printed).
Each round runs each app in a child process of its own (the extensions are bound once per process),
the two in turns; each figure is the median over ``--rounds`` of the child's CPU (user and system) per
request. A claim's figure includes its PostgreSQL and Redis client work, not the servers'; the board's
worker does not run (a claim finds the refresh slot taken after the first).

So it separates what the app's code costs from what gunicorn, gevent and the kernel add (compare
with the wrk rows of ``python -m bench``), and the limiter's share of every request from the rest.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from typing import Any

import orjson

from . import dataset, stack
from .progress import log

DB_NAME = "scoreboard_bench_app_cost"
USERS = 1000
KINDS = ("healthz", "top", "claim")


class Caller:
    """One app, called through its WSGI callable."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def environ(self, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[dict, bytes]:
        """A WSGI environment for the request, and its body."""
        from werkzeug.test import EnvironBuilder

        builder = EnvironBuilder(
            path=path,
            method=method,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            data=orjson.dumps(body) if body is not None else None,
            content_type="application/json" if body is not None else None,
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        environ = builder.get_environ()
        return environ, environ["wsgi.input"].read()

    def call(self, request: tuple[dict, bytes]) -> tuple[str, bytes]:
        """The status and body of one request through the app's WSGI callable."""
        environ, data = request
        environ = dict(environ)
        environ["wsgi.input"] = BytesIO(data)
        status: list[str] = []
        body = b"".join(self.app.wsgi_app(environ, lambda s, _h, _e=None: status.append(s)))
        return status[0], body


def build(limits: bool, prefix: str) -> Caller:
    """The production app on the bench database, with the rate limits on or off."""
    from scoreboard import create_app

    env = stack.stack_env(DB_NAME, prefix, 0)
    env["SCOREBOARD_RATE_LIMIT_ENABLED"] = "true" if limits else "false"
    os.environ.update({k: v for k, v in env.items() if k.startswith("SCOREBOARD_")})
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-app-cost-metrics-"))
    app = create_app()
    for handler in logging.getLogger().handlers:  # formatted as in production, written nowhere
        if hasattr(handler, "stream"):
            handler.stream = open(os.devnull, "w")  # noqa: SIM115 (kept open for the run)
    return Caller(app)


def prepare(caller: Caller, count: int) -> dict[str, list]:
    """The requests of each kind: ``count`` claims of a fresh pool of pending completions (``dataset``'s), and
    the two reads as often."""
    from scoreboard.security.tokens import mint_token

    pool = dataset.add_completions(DB_NAME, f"a{os.urandom(3).hex()}x", count, users=USERS, spread=7)
    with caller.app.app_context():
        tokens = {uid: mint_token(uid, [], None) for uid in {uid for _a, uid in pool}}
    requests: dict[str, list] = {"healthz": [caller.environ("GET", "/healthz")] * count}
    requests["top"] = [caller.environ("GET", "/api/score/top", tokens[pool[0][1]])] * count
    requests["claim"] = [
        caller.environ("POST", "/api/action/do", tokens[uid], {"actionId": action_id}) for action_id, uid in pool
    ]
    return requests


def measure(limits: bool, count: int) -> dict[str, float]:
    """In this process: one app, ``count`` requests of each kind; µs of CPU per request by kind."""
    caller = build(limits, f"bench:{os.urandom(3).hex()}:app-cost:")
    requests = prepare(caller, count + 1)
    figures = {}
    for kind in KINDS:
        caller.call(requests[kind][0])  # warm the path (the first claim also takes the refresh slot)
        started = time.process_time()
        for request in requests[kind][1:]:
            status, body = caller.call(request)
            if not status.startswith("200"):
                raise SystemExit(f"{kind} answered {status}: {body[:200]!r}")
        figures[kind] = (time.process_time() - started) / count * 1e6
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each app, alternating")
    parser.add_argument("--worker", choices=["on", "off"], help=argparse.SUPPRESS)  # one round, in a child
    args = parser.parse_args(argv)
    if args.worker:
        print(orjson.dumps(measure(args.worker == "on", args.requests)).decode())
        return
    log(f"app cost: a fresh {DB_NAME}")
    dataset.prepare(DB_NAME, USERS)
    figures: dict[str, dict[str, list[float]]] = {mode: {k: [] for k in KINDS} for mode in ("on", "off")}
    for round_ in range(args.rounds):
        for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            child = subprocess.run(
                [sys.executable, "-m", "bench.app_cost", "--worker", mode, "--requests", str(args.requests)],
                cwd=stack.ROOT,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if child.returncode != 0:
                raise SystemExit(f"round {round_ + 1}, limits {mode}: {child.stderr[-2000:]}")
            found = orjson.loads(child.stdout.strip().splitlines()[-1])
            for kind in KINDS:
                figures[mode][kind].append(found[kind])
            log(f"  round {round_ + 1}, limits {mode}: " + ", ".join(f"{k} {found[k]:.0f} µs" for k in KINDS))
    on = {k: statistics.median(v) for k, v in figures["on"].items()}
    off = {k: statistics.median(v) for k, v in figures["off"].items()}
    print(f"App CPU per request, in process (µs; median of {args.rounds} rounds of {args.requests:,} each):\n")
    print("| request | limits on | limits off | the limiter's share |")
    print("|---|---|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {on[kind]:.0f} | {off[kind]:.0f} | {on[kind] - off[kind]:.0f} µs |")
    ratio_top, ratio_claim = on["healthz"] / on["top"], on["healthz"] / on["claim"]
    print(f"\nBy CPU, limits on: top ÷ healthz {ratio_top:.2f}, claim ÷ healthz {ratio_claim:.2f}")


if __name__ == "__main__":
    main()
