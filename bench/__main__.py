"""``make bench`` / ``python -m bench``: start the production stack locally, load it, print one table.

See bench/README.md for the method. Everything started here is stopped here,
and the whole run is bounded (about 10 minutes with the defaults).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path

import redis

from . import dataset, profile, stack

HERE = Path(__file__).resolve().parent
SMALL_DB = "scoreboard_bench"
MILLION_DB = "scoreboard_bench_1m"


def log(message):
    """Progress on stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_wrk():
    """Install wrk from Debian's packages when it is missing."""
    if shutil.which("wrk"):
        return
    log("wrk is missing: installing it with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        sudo + ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def wrk(url, script, args=(), seconds=8, connections=32, threads=1):
    """Run wrk with one of bench/wrk's scripts; returns its JSON summary."""
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(HERE / "wrk" / script),
        url,
        "--",
        *[str(a) for a in args],
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


class BroadcastCounter:
    """Counts broadcasts on the board channel from a background thread."""

    def __init__(self, prefix):
        self.client = redis.Redis.from_url(stack.REDIS_URL)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(prefix + "board")
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self.pubsub.get_message(timeout=0.2):
                self.count += 1

    def close(self):
        """Stop counting."""
        self._stop.set()
        self._thread.join(2)
        self.pubsub.close()
        self.client.close()


class RecomputeSampler:
    """Samples the recompute counter every 0.25 s, to get the rate inside a window and its busiest second."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        client = redis.Redis.from_url(stack.REDIS_URL)
        key = self.prefix + "stats:recomputes"
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), int(client.get(key) or 0)))
            self._stop.wait(0.25)
        client.close()

    def close(self):
        """Stop sampling."""
        self._stop.set()
        self._thread.join(2)

    def rates(self, start, end):
        """``(mean rate in [start, end], highest rate over any 1 s inside it)``."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan"), float("nan")
        mean = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
        peak = 0.0
        for i, (t, n) in enumerate(inside):
            for t2, n2 in inside[i + 1 :]:
                if t2 - t >= 1.0:
                    peak = max(peak, (n2 - n) / (t2 - t))
                    break
        return mean, peak


def cpu_seconds(pids):
    """User + system CPU seconds used so far by ``pids`` together."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy (all CPUs, everything but idle and I/O wait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def recomputes(prefix):
    """The worker's recompute counter."""
    client = redis.Redis.from_url(stack.REDIS_URL)
    try:
        return int(client.get(prefix + "stats:recomputes") or 0)
    finally:
        client.close()


def clear_prefix(prefix):
    """Delete every Redis key of a bench run."""
    client = redis.Redis.from_url(stack.REDIS_URL)
    for key in client.scan_iter(prefix + "*", count=1000):
        client.delete(key)
    client.close()


def pct(values, p):
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def median(values):
    """The median, ignoring missing values."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


# --- socket delivery ------------------------------------------------------------------------------


def delivery(claims, sockets):
    """Claim -> socket latencies (s) for every successful claim and every sampled socket.

    The first broadcast that carries a claim is the first whose board shows the
    claiming user at (at least) the score the claim answered; a socket received
    the claim with the first message of that version or later.
    """
    per_user = {}
    for _t, version, scores in sorted(claims["broadcasts"], key=lambda b: b[1]):
        for user, score in scores.items():
            versions, values = per_user.setdefault(user, ([], []))
            if not values or score >= values[-1]:
                versions.append(version)
                values.append(score)
    carried = []
    undelivered = 0
    for due, done, status, user, score in claims["claims"]:
        if status != 200:
            continue
        versions, values = per_user.get(user, ([], []))
        i = bisect_left(values, score)
        if i == len(values):
            undelivered += 1
        else:
            carried.append((due, done, versions[i]))
    latencies, after_answer = [], []
    missed = 0
    for times, versions in sockets["sample"]:
        for due, done, version in carried:
            j = bisect_left(versions, version)
            if j == len(versions):
                missed += 1
            else:
                latencies.append(times[j] - due)
                after_answer.append(times[j] - done)
    return latencies, after_answer, undelivered, missed


class SocketFleet:
    """The socket client process, driven line by line."""

    def __init__(self, base, token, log_dir):
        url = base.replace("http://", "ws://") + "/ws/scoreboard"
        self.err = open(Path(log_dir) / "sockets.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sockets", url, token, stack.ORIGIN],
            cwd=stack.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            start_new_session=True,
        )

    def ask(self, line, timeout=180):
        """Send one command; return its answer."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        done = threading.Event()
        timer = threading.Timer(timeout, lambda: done.is_set() or self.proc.kill())
        timer.start()
        answer = self.proc.stdout.readline().strip()
        done.set()
        timer.cancel()
        if not answer:
            raise RuntimeError(f"the socket client died (see {self.err.name})")
        return answer

    def stop(self):
        """Quit the client (kill it if it lingers)."""
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait(5)
        self.err.close()


def claim_phase(st, fleet, claims_file, rate, seconds, out_dir, label):
    """One open-loop claim run against open sockets; returns its figures."""
    prefix = st.env["SCOREBOARD_REDIS_PREFIX"]
    fleet.ask("reset")
    sampler = RecomputeSampler(prefix)
    out = Path(out_dir) / f"claims-{label}.json"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.claimer",
                st.base,
                claims_file,
                str(rate),
                str(seconds),
                stack.REDIS_URL,
                prefix + "board",
                str(out),
            ],
            cwd=stack.ROOT,
            check=True,
            timeout=seconds + 90,
        )
    finally:
        sampler.close()
    time.sleep(2)  # claims an overloaded server still holds finish here, not in the next run
    sockets_out = Path(out_dir) / f"sockets-{label}.json"
    fleet.ask(f"dump {sockets_out}")
    claims = json.loads(out.read_text())
    sockets = json.loads(sockets_out.read_text())
    latencies, after_answer, undelivered, missed = delivery(claims, sockets)
    waits = [c[1] - c[0] for c in claims["claims"] if c[2] == 200]
    ok = sum(1 for c in claims["claims"] if c[2] == 200)
    # Rates are taken while claims are being sent (an overloaded server keeps working after that).
    window = [b for b in claims["broadcasts"] if claims["start"] <= b[0] <= claims["sent_until"]]
    span = claims["sent_until"] - claims["start"]
    recompute_rate, recompute_peak = sampler.rates(claims["start"], claims["sent_until"])
    answered = [c for c in claims["claims"] if c[2] == 200]
    result = {
        "label": label,
        "rate": rate,
        "claims_ok": ok,
        "claims_failed": len(claims["claims"]) - ok,
        # Claims answered 200 per second, over the time from the first claim due to the last answer.
        "claims_per_s": ok / max(1e-9, max(c[1] for c in answered) - claims["start"]) if answered else 0,
        "p50_ms": pct(latencies, 50) * 1000,
        "p95_ms": pct(latencies, 95) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        # The same, counted from the claim's answer: the delivery pipeline alone, without the claim's own wait.
        "answer_p50_ms": pct(after_answer, 50) * 1000,
        "answer_p99_ms": pct(after_answer, 99) * 1000,
        "claim_p50_ms": pct(waits, 50) * 1000,
        "claim_p99_ms": pct(waits, 99) * 1000,
        "recomputes_per_s": recompute_rate,
        "recomputes_peak_per_s": recompute_peak,
        "broadcasts_per_s": len(window) / span if span > 0 else float("nan"),
        "undelivered_claims": undelivered,
        "missed_pairs": missed,
        "pairs": len(latencies),
        "sockets_open": sockets["open"],
        "frames": sockets["frames"],
    }
    log(
        f"  {label}: {ok} claims ({result['claims_failed']} failed) p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms; "
        f"{result['recomputes_per_s']:.1f} recomputes/s, {result['broadcasts_per_s']:.1f} broadcasts/s"
    )
    return result


# --- the phases -----------------------------------------------------------------------------------


def http_phase(st, files, tokens, runs, seconds, out, prof_dir=None):
    """Empty endpoint, top-10 GET and claims, interleaved, ``runs`` times each."""
    prefix = st.env["SCOREBOARD_REDIS_PREFIX"]
    reader = tokens["u0000001"]
    # Warm up: first requests pay for imports, pools and the relay's subscription.
    wrk(st.base + "/bench/empty", "get.lua", ["-"], seconds=2)
    wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=2)
    rows = {"empty": [], "top": [], "claims": []}

    def cpu_by_pid():
        return {role: {pid: cpu_seconds([pid]) for pid in pids} for role, pids in st.process_groups().items()}

    def measured(url, script, args):
        before = cpu_by_pid()
        machine_before = machine_busy_seconds()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = wrk(url, script, args, seconds=seconds)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_after = machine_busy_seconds()
        after = cpu_by_pid()
        per_request = 1e6 / max(1, result["requests"])
        # CPU per request of every process taking part: steadier than req/s on a shared machine, and it
        # shows where a request's cost lies beyond the web workers (the database, Redis, the load generator).
        # A process started during the run (a new database connection) counts from zero.
        result["cpu_by_role_us"] = {
            role: sum(cpu - before[role].get(pid, 0.0) for pid, cpu in pids.items()) * per_request
            for role, pids in after.items()
        }
        result["cpu_by_role_us"]["wrk"] = (
            wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
        ) * per_request
        # The rest of the machine's busy time: mostly the kernel's network work (loopback softirqs).
        result["cpu_by_role_us"]["kernel and other"] = max(
            0.0, (machine_after - machine_before) * per_request - sum(result["cpu_by_role_us"].values())
        )
        result["cpu_us"] = result["cpu_by_role_us"]["web"]
        return result

    for run in range(runs):
        rows["empty"].append(measured(st.base + "/bench/empty", "get.lua", ["-"]))
        rows["top"].append(measured(st.base + "/api/score/top", "get.lua", [reader]))
        counter = BroadcastCounter(prefix)
        sampler = RecomputeSampler(prefix)
        tag = f"wrk{run}"
        claimed_before = dataset.claimed_count(SMALL_DB, files[tag][1])
        start = time.monotonic()
        result = measured(st.base + "/api/action/do", "claims.lua", [files[tag][0], 1])
        end = time.monotonic()
        counter.close()
        sampler.close()
        result["committed"] = dataset.claimed_count(SMALL_DB, files[tag][1]) - claimed_before
        result["recomputes_per_s"], result["recomputes_peak_per_s"] = sampler.rates(start, end)
        result["broadcasts_per_s"] = counter.count / (end - start)
        rows["claims"].append(result)
        log(
            f"  run {run + 1}: empty {rows['empty'][-1]['rps']:.0f}/s, top {rows['top'][-1]['rps']:.0f}/s, "
            f"claims {result['rps']:.0f}/s ({result['committed']} committed, {result['status_errors']} non-2xx), "
            f"{result['recomputes_per_s']:.1f} recomputes/s"
        )
    if prof_dir is not None:
        profile.capture_http(st, files, tokens, prof_dir, wrk)
    out["http"] = rows
    return rows


def socket_phase(st, files, hot_token, runs, seconds, rates, counts, out, log_dir):
    """Delivery latency at each socket count and claim rate; memory per idle socket."""
    fleet = SocketFleet(st.base, hot_token, log_dir)
    results, memory = [], {}
    try:
        open_before = 0
        for count in counts:
            base_rss = st.web_rss_kib()
            answer = fleet.ask(f"open {count}").split()
            time.sleep(3)  # let the workers settle before reading their memory
            rss = st.web_rss_kib()
            opened = int(answer[1])
            memory[count] = {
                "opened": opened,
                "failed": int(answer[2]),
                "open_seconds": float(answer[3]),
                "rss_before_kib": base_rss,
                "rss_after_kib": rss,
                "kib_per_socket": (rss - base_rss) / max(1, opened - open_before),
            }
            log(
                f"  {opened} sockets open ({answer[2]} failed, {float(answer[3]):.1f} s); web RSS "
                f"{base_rss / 1024:.0f} -> {rss / 1024:.0f} MiB: "
                f"{memory[count]['kib_per_socket']:.1f} KiB per added socket"
            )
            open_before = opened
            for rate in rates:
                for run in range(runs):
                    tag = f"hot-{count}-{rate}-{run}"
                    results.append(
                        claim_phase(st, fleet, files[tag][0], rate, seconds, log_dir, f"{count}-{rate}-{run}")
                        | {"sockets": count}
                    )
    finally:
        fleet.stop()
    out["sockets"] = results
    out["memory"] = {str(k): v for k, v in memory.items()}
    return results, memory


def latency_phase(db_name, users, run_id, log_dir, tokens, runs, seconds, worker_class):
    """Top-10 GET and claim latency of one request at a time (1 connection) on one database."""
    prefix = f"bench:{run_id}:{db_name}:"
    claims_total = runs * seconds * 2500
    pool = dataset.add_completions(
        db_name, f"lat{run_id[:4]}", claims_total, users=users, spread=7919 if users > 7919 else 1
    )
    need = {uid for _a, uid in pool}
    missing = need - tokens.keys()
    if missing:
        tokens.update(dataset.mint_tokens(sorted(missing)))
    path = Path(log_dir) / f"lat-{db_name}.txt"
    dataset.write_claims_file(path, pool, tokens)
    env = stack.stack_env(db_name, prefix, stack.free_port())
    st = stack.Stack(env, Path(log_dir) / db_name, worker_class)
    st.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    st.start(worker_timeout=600)
    build_seconds = time.monotonic() - started
    reader = next(iter(tokens.values()))
    try:
        wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=2, connections=1)
        tops, claims = [], []
        for _run in range(runs):
            tops.append(wrk(st.base + "/api/score/top", "get.lua", [reader], seconds=seconds, connections=1))
            claims.append(wrk(st.base + "/api/action/do", "claims.lua", [path, 1], seconds=seconds, connections=1))
    finally:
        st.stop()
        clear_prefix(prefix)
    log(
        f"  {users:,} users: top p50 {median([t['p50_us'] for t in tops]):.0f} us, "
        f"claim p50 {median([c['p50_us'] for c in claims]):.0f} us (stack up and mirror built in {build_seconds:.0f} s)"
    )
    return {"users": users, "top": tops, "claims": claims, "startup_seconds": build_seconds}


# --- the table ------------------------------------------------------------------------------------


def http_rows(http, row):
    """The throughput rows: empty endpoint, the two ratios, CPU per request by process."""
    empty = median([r["rps"] for r in http["empty"]])
    top = median([r["rps"] for r in http["top"]])
    claims = median([r["rps"] for r in http["claims"]])
    cpu = {k: median([r.get("cpu_us") for r in http[k]]) for k in ("empty", "top", "claims")}
    row(
        "empty endpoint req/s (wrk, 32 connections)",
        f"{empty:,.0f} ({cpu['empty']:,.0f} µs web CPU/req)",
        "(yardstick)",
        None,
    )
    row(
        "claims/s ÷ empty req/s",
        f"{claims:,.0f}/s ÷ {empty:,.0f}/s = **{claims / empty:.2f}** "
        f"(by web CPU per request: {cpu['empty'] / cpu['claims']:.2f})",
        "≥ 0.5",
        claims / empty >= 0.5,
    )
    row(
        "top-10 GET req/s ÷ empty req/s",
        f"{top:,.0f}/s ÷ {empty:,.0f}/s = **{top / empty:.2f}** "
        f"(by web CPU per request: {cpu['empty'] / cpu['top']:.2f})",
        "≥ 0.9",
        top / empty >= 0.9,
    )
    if all("cpu_by_role_us" in r for k in ("empty", "top", "claims") for r in http[k]):
        roles = list(http["empty"][0]["cpu_by_role_us"])
        by_role = {
            k: {role: median([r["cpu_by_role_us"][role] for r in http[k]]) for role in roles}
            for k in ("empty", "top", "claims")
        }
        value = "; ".join(
            f"{name}: "
            + ", ".join(f"{role} {by_role[k][role]:,.0f}" for role in roles)
            + f" (all {sum(by_role[k].values()):,.0f})"
            for k, name in (("empty", "empty"), ("top", "top-10 GET"), ("claims", "claim"))
        )
        row("CPU µs per request, by process", value, "(where the time goes)", None)


def table(out):
    """The results as one Markdown table (medians of the runs)."""
    http = out.get("http") or {"empty": [], "top": [], "claims": []}
    lines = ["| measure | result | target | met |", "|---|---|---|---|"]

    def row(name, value, target, met):
        verdict = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {value} | {target} | {verdict} |")

    if http["empty"]:
        http_rows(http, row)
    for count, rate, limit in ((1000, 200, 100), (1000, 1000, None), (10000, 200, None), (10000, 1000, 1000)):
        runs = [r for r in out.get("sockets", []) if r["sockets"] == count and r["rate"] == rate]
        if not runs:
            continue
        keys = (
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "answer_p50_ms",
            "answer_p99_ms",
            "claim_p99_ms",
            "claims_per_s",
        )
        p = {k: median([r.get(k) for r in runs]) for k in keys}
        got = sum(r["claims_ok"] for r in runs) / max(1, sum(r["claims_ok"] + r["claims_failed"] for r in runs))
        value = (
            f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / **{p['p99_ms']:.0f}** / {p['max_ms']:.0f} ms"
            + ("" if got == 1 else f" ({got:.1%} of claims answered 200)")
            + f"; from the claim's answer: p50 {p['answer_p50_ms']:.0f}, p99 {p['answer_p99_ms']:.0f} ms"
            + f"; claim answered p99 {p['claim_p99_ms']:.0f} ms; {p['claims_per_s']:.0f} claims/s served"
        )
        target = f"p99 ≤ {limit:,} ms" if limit else "—"
        row(
            f"claim → socket p50/p95/p99/max, {count:,} sockets, {rate:,} claims/s",
            value,
            target,
            p["p99_ms"] <= limit if limit else None,
        )
    parts, peaks = [], []
    claims_runs = http["claims"]
    if claims_runs:
        parts.append(
            f"wrk, as fast as it goes: {median([r['rps'] for r in claims_runs]):,.0f} claims/s → "
            f"{median([r['recomputes_per_s'] for r in claims_runs]):.1f} recomputes/s, "
            f"{median([r['broadcasts_per_s'] for r in claims_runs]):.1f} broadcasts/s"
        )
        peaks += [r["recomputes_peak_per_s"] for r in claims_runs]
    groups = {}
    for r in out.get("sockets", []):
        groups.setdefault((r["sockets"], r["rate"]), []).append(r)
        peaks.append(r["recomputes_peak_per_s"])
    for (count, rate), runs in sorted(groups.items()):
        parts.append(
            f"{rate:,}/s offered to {count:,} sockets: {median([r['claims_per_s'] for r in runs]):,.0f} "
            f"claims/s served → {median([r['recomputes_per_s'] for r in runs]):.1f} recomputes/s, "
            f"{median([r['broadcasts_per_s'] for r in runs]):.1f} broadcasts/s"
        )
    if parts:
        worst = max((p for p in peaks if p == p), default=float("nan"))
        row(
            "recomputes and broadcasts per second vs claims per second",
            "; ".join(parts) + f" (busiest second of all: {worst:.1f} recomputes)",
            "≤ 25 recomputes/s",
            worst <= 25,
        )
    mem = out.get("memory", {})
    if mem:
        biggest = mem[max(mem, key=int)]
        row(
            "resident memory per idle socket (web workers' RSS growth ÷ sockets added)",
            f"{biggest['kib_per_socket']:.1f} KiB ({int(biggest['opened']):,} open, RSS "
            f"{biggest['rss_after_kib'] / 1024:.0f} MiB)",
            "≤ 64 KiB",
            biggest["kib_per_socket"] <= 64,
        )
    lat = out.get("latency", [])
    if len(lat) == 2:
        small, big = sorted(lat, key=lambda r: r["users"])
        for kind, name in (("top", "top-10 GET"), ("claims", "claim")):
            a = median([r["p50_us"] for r in small[kind]]) / 1000
            b = median([r["p50_us"] for r in big[kind]]) / 1000
            a99 = median([r["p99_us"] for r in small[kind]]) / 1000
            b99 = median([r["p99_us"] for r in big[kind]]) / 1000
            change = (b - a) / a
            row(
                f"{name} latency p50 (p99), {small['users']:,} vs {big['users']:,} users",
                f"{a:.2f} ({a99:.2f}) ms vs {b:.2f} ({b99:.2f}) ms: **{change:+.0%}**",
                "within ±20%",
                abs(change) <= 0.2,
            )
    return "\n".join(lines)


def main(argv=None):
    """Run the suite and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (medians are quoted)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument("--quick", action="store_true", help="one short run of everything (a smoke test)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["http", "sockets", "users"], help="leave out a phase"
    )
    parser.add_argument("--sockets", default="1000,10000", help="socket counts to measure")
    parser.add_argument("--rates", default="200,1000", help="open-loop claim rates to measure")
    parser.add_argument("--worker-class", default=None, help="override gunicorn's worker class (gevent, gthread)")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles of the web workers")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra SCOREBOARD_ setting for the servers, e.g. PUBLIC_BOARD=true (for experiments)",
    )
    parser.add_argument("--fresh-million", action="store_true", help="rebuild the 1,000,000-user database")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 1, 4
    counts = [int(x) for x in args.sockets.split(",") if x]
    rates = [int(x) for x in args.rates.split(",") if x]

    ensure_wrk()
    nofile = stack.raise_open_files()
    run_id = uuid.uuid4().hex[:8]
    stamp = datetime.now(UTC)
    out_dir = HERE / "out" / stamp.strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    if max(counts, default=0) * 2 + 1000 > nofile:
        log(f"open-file limit is {nofile}: fewer sockets than asked may open")
    out = {
        "date": stamp.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "run_id": run_id,
        "env": args.env,
        "machine": {"cpus": os.cpu_count(), "nofile": nofile},
        "worker_class": args.worker_class or "gevent",
    }
    t0 = time.monotonic()

    log(f"preparing {SMALL_DB} (1,000 users) and minting tokens")
    dataset.prepare(SMALL_DB, 1000)
    tokens = dataset.mint_tokens([dataset.user_id(n) for n in range(1, 1001)] + dataset.HOT_USERS)
    files = {}
    for run in range(args.runs):
        tag = f"w{run_id[:4]}{run}x"
        pool = dataset.add_completions(SMALL_DB, tag, args.seconds * 4000, users=1000, spread=7)
        files[f"wrk{run}"] = (dataset.write_claims_file(out_dir / f"wrk{run}.txt", pool, tokens), tag)
    if args.profile:
        pool = dataset.add_completions(SMALL_DB, f"p{run_id[:4]}x", 6 * 4000, users=1000, spread=7)
        files["prof"] = (dataset.write_claims_file(out_dir / "prof.txt", pool, tokens), f"p{run_id[:4]}x")
    for count in counts:
        for rate in rates:
            for run in range(args.runs):
                tag = f"h{run_id[:4]}{count}r{rate}n{run}x"
                pool = dataset.add_completions(SMALL_DB, tag, rate * args.seconds + 10, hot=True)
                key = f"hot-{count}-{rate}-{run}"
                files[key] = (dataset.write_claims_file(out_dir / f"{key}.txt", pool, tokens), tag)

    prefix = f"bench:{run_id}:"
    extra = dict(("SCOREBOARD_" + item.split("=", 1)[0], item.split("=", 1)[1]) for item in args.env)
    env = stack.stack_env(SMALL_DB, prefix, stack.free_port(), extra)
    st = stack.Stack(env, out_dir, args.worker_class)
    try:
        log(f"starting gunicorn ({args.worker_class or 'gevent'}, 2 workers) and a Celery worker")
        st.start()
        if "http" not in args.skip:
            log("HTTP: empty endpoint, top-10 GET, claims (wrk)")
            http_phase(st, files, tokens, args.runs, args.seconds, out, out_dir / "profiles" if args.profile else None)
        if "sockets" not in args.skip:
            log("sockets: claim -> socket delivery, memory per socket")
            socket_phase(st, files, tokens["hot01"], args.runs, args.seconds, rates, counts, out, out_dir)
    finally:
        st.stop()
        clear_prefix(prefix)

    if "users" not in args.skip:
        log("users: read and claim latency with 1,000 and with 1,000,000 users")
        if args.fresh_million or dataset.count_users(MILLION_DB) != 1_000_010:
            log(f"  building {MILLION_DB} with generate_series (about a minute, kept for later runs)")
            dataset.prepare(MILLION_DB, 1_000_000, fresh=True)
        out["latency"] = [
            latency_phase(
                SMALL_DB, 1000, run_id, out_dir, tokens, args.runs, max(3, args.seconds // 2), args.worker_class
            ),
            latency_phase(
                MILLION_DB, 1_000_000, run_id, out_dir, tokens, args.runs, max(3, args.seconds // 2), args.worker_class
            ),
        ]

    out["seconds"] = time.monotonic() - t0
    text = table(out)
    (out_dir / "results.json").write_text(json.dumps(out, indent=1, default=str))
    header = (
        f"Scoreboard benchmark, {stamp:%Y-%m-%d %H:%M} UTC, `make bench` "
        f"({args.runs} run(s) of {args.seconds} s each, medians; {os.cpu_count()} CPUs, load generators on "
        f"the same machine; took {out['seconds'] / 60:.1f} min)"
    )
    (out_dir / "table.md").write_text(header + "\n\n" + text + "\n")
    latest = HERE / "out" / "latest.md"
    latest.write_text(header + "\n\n" + text + "\n")
    print(header)
    print()
    print(text)
    print(f"\n(raw results: {out_dir.relative_to(stack.ROOT)})")


if __name__ == "__main__":
    main()
