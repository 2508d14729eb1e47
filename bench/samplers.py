"""What the bench samples while load runs: CPU time from /proc, recomputes, broadcasts; and the statistics it quotes."""

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import redis
import requests

from . import stack


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` together."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, everything but idle and I/O wait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """CPU time over a window: of every process by role, of the load generator (a finished child), of the machine.

    ``groups`` gives the pids by role (``Stack.process_groups``); it is read at both ends, so a
    process started during the window (a new database connection) counts from zero.
    """

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self._before = self._by_pid()
        self._machine_before = machine_busy_seconds()
        self._children_before = children_cpu_seconds()

    def _by_pid(self) -> dict[str, dict[int, float]]:
        return {role: {pid: cpu_seconds([pid]) for pid in pids} for role, pids in self._groups().items()}

    def seconds(self) -> dict[str, float]:
        """Close the window: CPU seconds by role, plus ``client`` (the load generator) and ``kernel and other``."""
        children_after = children_cpu_seconds()
        machine_after = machine_busy_seconds()
        after = self._by_pid()
        by_role = {
            role: sum(cpu - self._before[role].get(pid, 0.0) for pid, cpu in pids.items())
            for role, pids in after.items()
        }
        by_role["client"] = children_after - self._children_before
        # The rest of the machine's busy time: mostly the kernel's network work (loopback softirqs).
        by_role["kernel and other"] = max(0.0, (machine_after - self._machine_before) - sum(by_role.values()))
        return by_role

    def per_request(self, requests_answered: int) -> dict[str, float]:
        """Close the window: CPU µs per request by role (as ``seconds``)."""
        return {role: cpu * 1e6 / max(1, requests_answered) for role, cpu in self.seconds().items()}


class CpuSampler:
    """CPU seconds of every process by role (and the machine's busy time), sampled every ``interval`` s.

    ``between(a, b)`` gives the CPU spent from the last sample at or before ``a`` to the first at or
    after ``b``, so a window can follow the load itself (its first claim due to its last answer),
    not the load generator's start-up and tail. A process that appears inside counts from zero.
    """

    def __init__(self, groups: Callable[[], dict[str, list[int]]], interval: float = 0.2) -> None:
        self._groups = groups
        self.interval = interval
        self.samples: list[tuple[float, dict[str, dict[int, float]], float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        while not self.samples and self._thread.is_alive():
            time.sleep(0.01)

    def _run(self) -> None:
        while not self._stop.is_set():
            groups = self._groups()
            by_role = {role: {pid: cpu_seconds([pid]) for pid in pids} for role, pids in groups.items()}
            self.samples.append((time.monotonic(), by_role, machine_busy_seconds()))
            self._stop.wait(self.interval)

    def close(self) -> None:
        """Stop sampling (after one last sample)."""
        self._stop.set()
        self._thread.join(5)

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds by role from ``start`` to ``end``, plus ``other`` (the rest of the machine's busy time)."""
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or self.samples[-1:]
        (t0, first, busy0), (t1, last, busy1) = before[-1], after[0]
        by_role = {
            role: sum(cpu - first.get(role, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for role, pids in last.items()
        }
        # The claim driver, the kernel's network work, and whatever else the machine ran.
        by_role["other"] = max(0.0, busy1 - busy0 - sum(by_role.values()))
        by_role["seconds"] = t1 - t0
        return by_role


class BroadcastCounter:
    """Counts broadcasts on the board channel from a background thread."""

    def __init__(self, prefix: str) -> None:
        self.client = redis.Redis.from_url(stack.REDIS_URL)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(prefix + "board")
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pubsub.get_message(timeout=0.2):
                self.count += 1

    def close(self) -> None:
        """Stop counting."""
        self._stop.set()
        self._thread.join(2)
        self.pubsub.close()
        self.client.close()


class RecomputeSampler:
    """Samples a recompute counter every 0.25 s, to get the rate inside a window and its busiest second.

    ``read`` returns the counter (``Stack.recomputes``: the worker's metrics endpoint); a sample
    is stamped with the middle of the read. A read that fails is skipped.
    """

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                value = self.read()
            except requests.RequestException:
                pass
            else:
                self.samples.append(((asked + time.monotonic()) / 2, value))
            self._stop.wait(0.25)

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)

    def rates(self, start: float, end: float) -> tuple[float, float]:
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


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def median(values: Iterable[float | None]) -> float:
    """The median, ignoring missing values."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")
