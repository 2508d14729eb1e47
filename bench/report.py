"""The results as one Markdown table (medians of the runs), judged against ``TARGETS``; and the files a run leaves."""

import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from . import stack
from .samplers import median

Results = dict[str, Any]


Judge = tuple[str, float]  # ("≥", x), ("≤", x), or ("±", x) for |figure| ≤ x


class Target(NamedTuple):
    """One row of the table."""

    figure: str  # the figure the row shows: a key of figures()
    measure: str  # the row's name; ``{fields}`` are filled from the figure's labels
    target: str  # the target column
    # One judge, or several that must all hold (the figure's value is then a tuple, one number each); None: not judged
    judge: Judge | tuple[Judge, ...] | None


# The ranking reads: fast, and as fast on a million users as on a thousand (judged on the p50s).
RANKS_TARGET = "p50 ≤ 2 ms; within ±20%"
RANKS_JUDGES = (("≤", 2.0), ("±", 0.2))

# Every row of the table, in order, with its target. A row whose figure the run did not measure is left out.
TARGETS: tuple[Target, ...] = (
    Target("healthz", "`GET /healthz` req/s (wrk, 32 connections): the yardstick", "(yardstick)", None),
    Target(
        "top ratio",
        "`GET /api/score/top` req/s ÷ `/healthz` req/s (valid token, limits on)",
        "≥ 0.8",
        ("≥", 0.8),
    ),
    Target(
        "claims ratio",
        "claims/s ÷ `/healthz` req/s (each a committed claim, counted in the database)",
        "≥ 0.3",
        ("≥", 0.3),
    ),
    Target(
        "cpu per claim",
        "machine CPU per claim, all processes (web, PostgreSQL, worker, Redis), fixed load of {rate} claims/s",
        "≤ 1.0 ms",
        ("≤", 1.0),
    ),
    Target("cpu by role", "CPU µs per request, by process (wrk runs above)", "(where the time goes)", None),
    Target(
        "delivery 1000 200",
        "claim → socket p50/p95/p99/max, 1,000 sockets, 200 claims/s",
        "p99 ≤ 50 ms",
        ("≤", 50),
    ),
    Target("delivery 1000 1000", "claim → socket p50/p95/p99/max, 1,000 sockets, 1,000 claims/s", "—", None),
    Target("delivery 10000 200", "claim → socket p50/p95/p99/max, 10,000 sockets, 200 claims/s", "—", None),
    Target(
        "delivery 10000 1000",
        "claim → socket p50/p95/p99/max, 10,000 sockets, 1,000 claims/s offered; share served",
        "p99 ≤ 1,000 ms; ≥ 98% served",
        (("≤", 1000), ("≥", 0.98)),
    ),
    Target(
        "fanout",
        "fan-out CPU per delivered frame, web process (and its share of the web CPU)",
        "≤ 5 µs",
        ("≤", 5.0),
    ),
    Target(
        "recomputes",
        "recomputes and broadcasts per second vs claims per second",
        "≤ 25 recomputes/s",
        ("≤", 25),
    ),
    Target(
        "memory",
        "resident memory per idle socket (web workers' RSS growth ÷ sockets added)",
        "≤ 64 KiB",
        ("≤", 64),
    ),
    Target("latency top", "top-10 GET latency p50 (p99), {small} vs {big} users", "within ±20%", ("±", 0.2)),
    Target("latency claims", "claim latency p50 (p99), {small} vs {big} users", "within ±20%", ("±", 0.2)),
    *(
        Target(f"ranks {kind}", f"{name} p50 (p99), {{small}} vs {{big}} users", RANKS_TARGET, RANKS_JUDGES)
        for kind, name in (
            ("me", "rank lookup, all-time (`GET /api/scores/me?radius=0`)"),
            ("page", "page of 50 at mid-board, rank {depth} (`GET /api/scores?cursor=`)"),
            ("around", "around-me, 5 either side (`GET /api/scores/me?radius=5`)"),
            ("history", "own history, {ledger} (`GET /api/scores/<id>/history`)"),
            ("week", "rank lookup, this week (`GET /api/scores/me?period=week&radius=0`)"),
            ("users", "10 chosen users (`GET /api/scores/users?ids=`)"),
        )
    ),
    Target(
        "claim cost",
        "claim statement with the period boards (its completion flagged for the worker) vs without them: p50 (p99), "
        "with ÷ without",
        "≤ 1.10 (p50)",
        ("≤", 1.10),
    ),
)


class Figure(NamedTuple):
    """What a row shows (``text``) and the number its target judges (``value``)."""

    text: str
    value: float | tuple[float, ...] | None = None  # a tuple when the row has several judges, in their order
    labels: Mapping[str, str] = {}  # fields for the row's name (never mutated)


def meets(judge: tuple[str, float], value: float) -> bool:
    """Whether ``value`` meets ``judge`` (a missing value, NaN, never does)."""
    comparison, limit = judge
    if comparison == "≥":
        return value >= limit
    if comparison == "≤":
        return value <= limit
    if comparison == "±":
        return abs(value) <= limit
    raise ValueError(f"unknown comparison {comparison!r}")


def verdict(judge: Judge | tuple[Judge, ...] | None, value: float | tuple[float, ...] | None) -> str:
    """The "met" column: every judge of the row must hold."""
    if judge is None:
        return "—"
    if value is None:
        return "**no**"
    if isinstance(judge[0], tuple):
        held = isinstance(value, tuple) and len(value) == len(judge) and all(map(meets, judge, value))
    else:
        held = meets(judge, value)
    return "yes" if held else "**no**"


# --- the figures, by phase ------------------------------------------------------------------------


SERVER_ROLES = ("web", "worker", "postgres", "redis")


def http_figures(http: Results) -> dict[str, Figure]:
    """The throughput rows: ``/healthz``, the two ratios, CPU per request by process."""
    kinds = ("healthz", "top", "claims")
    rps = {k: median([r["rps"] for r in http[k]]) for k in kinds}
    # Claims count only if committed: the database's count over wrk's duration.
    rps["claims"] = median([r.get("committed_per_s") for r in http["claims"]])
    cpu = {k: median([r.get("cpu_us") for r in http[k]]) for k in kinds}
    health, top, claims = rps["healthz"], rps["top"], rps["claims"]
    errors = sum(r["status_errors"] for r in http["top"])
    found = {
        "healthz": Figure(f"{health:,.0f} ({cpu['healthz']:,.0f} µs web CPU/req)"),
        "claims ratio": Figure(
            f"{claims:,.0f}/s ÷ {health:,.0f}/s = **{claims / health:.2f}** "
            f"(by web CPU per request: {cpu['healthz'] / cpu['claims']:.2f})",
            claims / health,
        ),
        "top ratio": Figure(
            f"{top:,.0f}/s ÷ {health:,.0f}/s = **{top / health:.2f}** "
            f"(by web CPU per request: {cpu['healthz'] / cpu['top']:.2f})"
            + (f" ({errors:,} non-2xx)" if errors else ""),
            top / health if not errors else float("nan"),
        ),
    }
    if all("cpu_by_role_us" in r for k in kinds for r in http[k]):
        roles = list(http["healthz"][0]["cpu_by_role_us"])
        by_role = {k: {role: median([r["cpu_by_role_us"][role] for r in http[k]]) for role in roles} for k in kinds}
        found["cpu by role"] = Figure(
            "; ".join(
                f"{name}: "
                + ", ".join(f"{role} {by_role[k][role]:,.0f}" for role in roles)
                + f" (all {sum(by_role[k].values()):,.0f})"
                for k, name in (("healthz", "`/healthz`"), ("top", "top-10 GET"), ("claims", "claim"))
            )
        )
    return found


def cpu_figures(cpu: Results, http: Results | None) -> dict[str, Figure]:
    """Machine CPU per claim under the fixed load (judged on ordinary users' claims), by process."""
    if not cpu or not cpu.get("spread"):
        return {}
    parts, value = [], float("nan")
    for pattern, name in (("spread", "ordinary users"), ("hot", "hot users, each claim changing the top 10")):
        runs = cpu.get(pattern) or []
        if not runs:
            continue
        total = median([r["server_us_per_claim"] for r in runs]) / 1000
        roles = {role: median([r["cpu_us_per_claim"][role] for r in runs]) for role in runs[0]["cpu_us_per_claim"]}
        committed = median([r["committed"] for r in runs])
        offered = median([r["offered"] for r in runs])
        if pattern == "spread":
            value = total if committed >= 0.98 * offered else float("nan")
        parts.append(
            f"{name}: **{total:.2f} ms** ("
            + ", ".join(f"{role} {roles[role]:,.0f}" for role in SERVER_ROLES)
            + f" µs; besides: claim driver, kernel and other work {roles['other']:,.0f}"
            + f"; {committed:,.0f} of {offered:,.0f} committed)"
        )
    if http and http.get("claims") and all("cpu_by_role_us" in r for r in http["claims"]):
        wrk_total = median([sum(r["cpu_by_role_us"][role] for role in SERVER_ROLES) for r in http["claims"]])
        parts.append(f"at wrk's saturation: {wrk_total / 1000:.2f} ms")
    return {"cpu per claim": Figure("; ".join(parts), value, {"rate": f"{cpu['spread'][0]['rate']:,}"})}


def fanout_figures(sockets: list[Results], cpu: Results) -> dict[str, Figure]:
    """Web CPU per frame delivered: each socket run's web CPU less its claims' own, divided by the frames.

    The claims' own web CPU per claim is that of the reference runs at the same rate with no socket open
    (the same hot users, each claim recomputing and broadcasting to no socket): a claim's cost depends on
    the rate (claims batch under load), so the fixed load's figure (``cpu``, hot users, 200/s) stands in
    only where a rate has no reference run. Judged on the worst of the 10,000-socket runs (of all runs if
    none had 10,000).
    """
    hot = (cpu or {}).get("hot") or []
    alone: dict[int, float] = {}
    for rate in {r["rate"] for r in sockets if r["sockets"] == 0}:
        runs = [r for r in sockets if r["sockets"] == 0 and r["rate"] == rate and r["claims_ok"] and "cpu_s" in r]
        if runs:
            alone[rate] = median([r["cpu_s"]["web"] * 1e6 / r["claims_ok"] for r in runs])
    fixed = median([r["cpu_us_per_claim"]["web"] for r in hot]) if hot else None
    groups: dict[tuple[int, int], list[Results]] = {}
    for r in sockets:
        if "cpu_s" in r and r["frames"] and (r["rate"] in alone or fixed is not None):
            groups.setdefault((r["sockets"], r["rate"]), []).append(r)
    parts, judged = [], {}
    for (count, rate), runs in sorted(groups.items()):
        per_claim = alone.get(rate, fixed)
        web_us = median([r["cpu_s"]["web"] * 1e6 for r in runs])
        fanout_us = median([r["cpu_s"]["web"] * 1e6 - r["claims_ok"] * per_claim for r in runs])
        frames = median([r["frames"] for r in runs])
        per_frame = fanout_us / frames
        judged[(count, rate)] = per_frame
        parts.append(
            f"{count:,} sockets, {rate:,}/s: **{per_frame:.1f} µs** ({frames:,.0f} frames; "
            f"{max(0.0, fanout_us) / web_us:.0%} of the web CPU)"
        )
    if not judged:
        return {}
    worst = max((v for (count, _r), v in judged.items() if count >= 10000), default=max(judged.values()))
    own = ", ".join(f"{rate:,}/s {us:,.0f} µs" for rate, us in sorted(alone.items()))
    source = f"with no socket open: {own}" if alone else "from the fixed load"
    if fixed is not None and set(alone) != {r for _c, r in groups}:
        source += f"; else the fixed load's {fixed:,.0f} µs"
    return {"fanout": Figure("; ".join(parts) + f" (claims' own web CPU each, {source})", worst)}


def delivery_figures(sockets: list[Results]) -> dict[str, Figure]:
    """Claim -> socket latency for each socket count and claim rate measured (judged on p99)."""
    groups: dict[tuple[int, int], list[Results]] = {}
    for r in sockets:
        if r["sockets"]:  # the reference runs have no socket to deliver to
            groups.setdefault((r["sockets"], r["rate"]), []).append(r)
    keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "answer_p50_ms", "answer_p99_ms", "claim_p99_ms", "claims_per_s")
    found = {}
    for (count, rate), runs in groups.items():
        p = {k: median([r.get(k) for r in runs]) for k in keys}
        got = sum(r["claims_ok"] for r in runs) / max(1, sum(r["claims_ok"] + r["claims_failed"] for r in runs))
        served = p["claims_per_s"] / rate
        found[f"delivery {count} {rate}"] = Figure(
            f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / **{p['p99_ms']:.0f}** / {p['max_ms']:.0f} ms"
            + ("" if got == 1 else f" ({got:.1%} of claims answered 200)")
            + f"; from the claim's answer: p50 {p['answer_p50_ms']:.0f}, p99 {p['answer_p99_ms']:.0f} ms"
            + f"; claim answered p99 {p['claim_p99_ms']:.0f} ms; {p['claims_per_s']:.0f} claims/s served "
            + f"(**{served:.0%}** of those offered)",
            (p["p99_ms"], served) if (count, rate) == (10000, 1000) else p["p99_ms"],
        )
    return found


def recompute_figures(wrk_claims: list[Results], sockets: list[Results]) -> dict[str, Figure]:
    """Recomputes and broadcasts per second in every claims run (judged on the busiest second of all)."""
    parts, peaks = [], []
    if wrk_claims:
        parts.append(
            f"wrk, as fast as it goes: {median([r['rps'] for r in wrk_claims]):,.0f} claims/s → "
            f"{median([r['recomputes_per_s'] for r in wrk_claims]):.1f} recomputes/s, "
            f"{median([r['broadcasts_per_s'] for r in wrk_claims]):.1f} broadcasts/s"
        )
        peaks += [r["recomputes_peak_per_s"] for r in wrk_claims]
    groups: dict[tuple[int, int], list[Results]] = {}
    for r in sockets:
        groups.setdefault((r["sockets"], r["rate"]), []).append(r)
        peaks.append(r["recomputes_peak_per_s"])
    for (count, rate), runs in sorted(groups.items()):
        parts.append(
            f"{rate:,}/s offered to {count:,} sockets: {median([r['claims_per_s'] for r in runs]):,.0f} "
            f"claims/s served → {median([r['recomputes_per_s'] for r in runs]):.1f} recomputes/s, "
            f"{median([r['broadcasts_per_s'] for r in runs]):.1f} broadcasts/s"
        )
    if not parts:
        return {}
    worst = max((p for p in peaks if p == p), default=float("nan"))
    return {"recomputes": Figure("; ".join(parts) + f" (busiest second of all: {worst:.1f} recomputes)", worst)}


def memory_figures(memory: dict[str, Results]) -> dict[str, Figure]:
    """Memory per idle socket, at the largest socket count."""
    if not memory:
        return {}
    biggest = memory[max(memory, key=int)]
    return {
        "memory": Figure(
            f"{biggest['kib_per_socket']:.1f} KiB ({int(biggest['opened']):,} open, RSS "
            f"{biggest['rss_after_kib'] / 1024:.0f} MiB)",
            biggest["kib_per_socket"],
        )
    }


def latency_figures(latency: list[Results]) -> dict[str, Figure]:
    """Top-10 GET and claim latency on the small database vs the large one (judged on the p50's change)."""
    if len(latency) != 2:
        return {}
    small, big = sorted(latency, key=lambda r: r["users"])
    labels = {"small": f"{small['users']:,}", "big": f"{big['users']:,}"}
    found = {}
    for kind in ("top", "claims"):
        a = median([r["p50_us"] for r in small[kind]]) / 1000
        b = median([r["p50_us"] for r in big[kind]]) / 1000
        a99 = median([r["p99_us"] for r in small[kind]]) / 1000
        b99 = median([r["p99_us"] for r in big[kind]]) / 1000
        change = (b - a) / a
        found[f"latency {kind}"] = Figure(
            f"{a:.2f} ({a99:.2f}) ms vs {b:.2f} ({b99:.2f}) ms: **{change:+.0%}**", change, labels
        )
    return found


def ledger_label(small: list[float], big: list[float]) -> str:
    """The history users' completions (median claimed, median others) on both databases."""
    same = tuple(small) == tuple(big)
    sides = [small] if same else [small, big]
    text = " / ".join(f"{c:.0f} claimed + {o:.0f} other completions" for c, o in sides)
    return text + (" each on both" if same else " each")


def ranks_figures(rank_runs: list[Results]) -> dict[str, Figure]:
    """The ranking reads on the small database vs the large one, and the claim statement with vs without periods.

    A read is judged on both p50s (the worse against 2 ms) and on the p50's change.
    """
    if len(rank_runs) != 2:
        return {}
    small, big = sorted(rank_runs, key=lambda r: r["users"])
    labels = {"small": f"{small['users']:,}", "big": f"{big['users']:,}"}
    found = {}
    for kind in small["reads"]:
        if kind not in big["reads"]:
            continue
        a, b = (median([r["p50_us"] for r in side["reads"][kind]]) / 1000 for side in (small, big))
        a99, b99 = (median([r["p99_us"] for r in side["reads"][kind]]) / 1000 for side in (small, big))
        errors = sum(r["status_errors"] + r["timeouts"] for side in (small, big) for r in side["reads"][kind])
        change = (b - a) / a
        text = f"{a:.2f} ({a99:.2f}) ms vs {b:.2f} ({b99:.2f}) ms: **{change:+.0%}**"
        if errors:
            text += f" ({errors:,} non-2xx or timed out)"
        found[f"ranks {kind}"] = Figure(
            text,
            (max(a, b), change) if not errors else (float("nan"), float("nan")),
            {
                **labels,
                "depth": f"~{small['page_first_rank']:,} / ~{big['page_first_rank']:,}",
                "ledger": ledger_label(small["history_ledger"], big["history_ledger"]),
            },
        )
    parts, ratios = [], []
    for side in (small, big):
        for pattern, cost in side["claim_cost"].items():
            keys = ("with_p50_ms", "with_p99_ms", "without_p50_ms", "without_p99_ms")
            p = {k: median([r.get(k) for r in cost["runs"]]) for k in keys}
            ratio = p["with_p50_ms"] / p["without_p50_ms"]
            ratios.append(ratio)
            parts.append(
                f"{side['users']:,} users, {pattern}: {p['with_p50_ms']:.2f} ({p['with_p99_ms']:.2f}) ms vs "
                f"{p['without_p50_ms']:.2f} ({p['without_p99_ms']:.2f}) ms = **{ratio:.2f}** "
                f"(p99 {p['with_p99_ms'] / p['without_p99_ms']:.2f}; "
                f"WAL {cost['wal_with_bytes'] / 1024:.1f} vs {cost['wal_without_bytes'] / 1024:.1f} KiB; "
                f"worker's fold {cost.get('fold_us_per_claim', float('nan')):.0f} µs a claim)"
                + (f", {cost['failed']} claims matched nothing" if cost["failed"] else "")
            )
    claims = median([r["claims"] for side in (small, big) for c in side["claim_cost"].values() for r in c["runs"]])
    found["claim cost"] = Figure(
        "; ".join(parts) + f" ({claims:,.0f} claims a run and pattern, alternating)", max(ratios)
    )
    return found


def figures(out: Results) -> dict[str, Figure]:
    """Every figure the run measured, by the key ``TARGETS`` names it with."""
    http = out.get("http") or {"healthz": [], "top": [], "claims": []}
    sockets = out.get("sockets", [])
    return {
        **(http_figures(http) if http.get("healthz") else {}),
        **cpu_figures(out.get("cpu") or {}, http),
        **delivery_figures(sockets),
        **fanout_figures(sockets, out.get("cpu") or {}),
        **recompute_figures(http.get("claims", []), sockets),
        **memory_figures(out.get("memory", {})),
        **latency_figures(out.get("latency", [])),
        **ranks_figures(out.get("ranks", [])),
    }


# The rows the baseline is measured on (the others are the scoreboard's own machinery).
BASELINE_ROWS = frozenset(
    {"healthz", "top ratio", "claims ratio", "cpu per claim", "cpu by role", "fanout", "memory"}
    | {f"delivery {c} {r}" for c in (1000, 10000) for r in (200, 1000)}
)


def table(out: Results) -> str:
    """The results as one Markdown table: one row per target whose figure was measured, the baseline beside it."""
    found = figures(out)
    base = {k: v for k, v in figures(out["baseline"]).items() if k in BASELINE_ROWS} if out.get("baseline") else None
    if base is None:
        lines = ["| measure | result | target | met |", "|---|---|---|---|"]
    else:
        lines = ["| measure | scoreboard | baseline | target | met |", "|---|---|---|---|---|"]
    for row in TARGETS:
        figure = found.get(row.figure)
        if figure is not None:
            name = row.measure.format(**figure.labels)
            cells = [figure.text]
            if base is not None:
                other = base.get(row.figure)
                cells.append(other.text if other is not None else "—")
            lines.append(f"| {name} | {' | '.join(cells)} | {row.target} | {verdict(row.judge, figure.value)} |")
    return "\n".join(lines)


def missed(out: Results) -> list[str]:
    """One line per judged row the scoreboard missed, with its figure against its target."""
    found = figures(out)
    lines = []
    for row in TARGETS:
        figure = found.get(row.figure)
        if figure is not None and row.judge is not None and verdict(row.judge, figure.value) != "yes":
            judges = row.judge if isinstance(row.judge[0], tuple) else (row.judge,)
            values = figure.value if isinstance(figure.value, tuple) else (figure.value,)
            gaps = []
            for (comparison, limit), value in zip(judges, values, strict=False):
                if value is None or value != value:
                    gaps.append("not measured cleanly")
                elif not meets((comparison, limit), value):
                    ratio = value / limit
                    gaps.append(f"{value:,.3g} against {comparison} {limit:,.3g} ({ratio:.2f} times the target)")
            lines.append(f"- {row.measure.format(**figure.labels)}: " + "; ".join(gaps))
    return lines


NOTES = (
    "Production defaults: JSON logs at INFO (one line per request), token checks on, the web's metrics in a "
    "multiprocess directory, rate limits on with the default windows (per IP 2, per user 3), each raised only "
    "to a few times what the bench's one IP and hot users send (`bench/stack.py` `RATE_LIMITS`: "
    "{ip} per IP, {user} per user, {service} per site backend, so that no two limit strings share a window); "
    "the socket origin allow-list and per-IP socket cap opened for the bench's one "
    "origin and IP. `/healthz` is exempt from limits. The baseline: `bench/baseline/app.py` (each claim one "
    "transaction that also recomputes the top 10 with SQL, then written to every socket from the request; each "
    "read a SQL query; no limits, no request log, no metrics), same gunicorn settings, its own database copied "
    "from the bench's; {runs} run(s) each."
)


def publish(out: Results, out_dir: Path, stamp: datetime, runs: int, seconds: int) -> None:
    """Write ``results.json``, ``table.md`` and ``../latest.md`` in ``out_dir``; print the table on stdout."""
    (out_dir / "results.json").write_text(json.dumps(out, indent=1, default=str))
    header = (
        f"Scoreboard benchmark, {stamp:%Y-%m-%d %H:%M} UTC, `make bench` "
        f"({runs} run(s) of {seconds} s each, medians; {os.cpu_count()} CPUs, load generators on "
        f"the same machine; took {out['seconds'] / 60:.1f} min)"
    )
    document = header + "\n\n" + table(out) + "\n"
    gaps = missed(out)
    if gaps:
        document += "\nMissed:\n" + "\n".join(gaps) + "\n"
    notes = NOTES.format(
        ip=stack.RATE_LIMITS["SCOREBOARD_RATE_LIMIT_IP"],
        user=stack.RATE_LIMITS["SCOREBOARD_RATE_LIMIT_USER"],
        service=stack.RATE_LIMITS["SCOREBOARD_RATE_LIMIT_SERVICE"],
        runs=(out.get("baseline") or {}).get("runs", 0),
    )
    document += "\n" + notes + "\n"
    (out_dir / "table.md").write_text(document)
    (out_dir.parent / "latest.md").write_text(document)
    print(document)
    print(f"(raw results: {out_dir.relative_to(stack.ROOT)})")
