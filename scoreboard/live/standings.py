"""``me`` messages: each watching socket's own rank, score and board size, read once per board for all of them.

A socket opened for somebody (a token or a ticket) may send ``{"type": "watch"}``; it then gets
``{"type": "me", "version", "period", ["key",] "rank", "score", "total"}`` at once, and again
whenever its viewer's rank, score or the board's total changed. Nothing is read per socket: after
a broadcast of a board kind (and at most once a second per kind), this process gathers the user
ids of every socket watching that kind and asks the kind's current ranking once
(``Ranking.standings(user_ids)`` and ``Ranking.total()``); only the sockets whose
``(rank, score, total)`` differs from what they were last sent get a message, at most one a
second each. A claim that leaves the top list unchanged broadcasts nothing, so every kind that
has watchers is also read every :data:`POLL` seconds: a viewer below the top list sees their own
change within that time.

All of it runs on the relay's ticker thread, never on the fan-out path, so board frames are not
delayed by it. A viewer without a rank (no points in the period yet, or hidden) gets ``rank`` and
``score`` null. A held viewer (a suspect awaiting review, on no board) gets the rank, score and
total they would have: the watchers a read finds unranked are looked up once in the database
(``board.standings.held_members``) and each held one placed in the ranking (``around_as_if``).
"""

from __future__ import annotations

import json
import logging
import threading
import time

from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from ..board.local_copy import LocalBoards
from ..board.standings import held_members
from ..extensions import db
from ..periods import ALL, KINDS, resolve
from ..stores import get_stores

log = logging.getLogger(__name__)

# At most one read per board kind, and one "me" per socket, in this many seconds.
INTERVAL = 1.0
# Kinds with watchers are read this often even without a broadcast (a change below the top list is not broadcast).
POLL = 5.0
# User ids asked of the ranking per call (one script each), so a big process never holds Redis long.
CHUNK = 500


def me_message(version: int, period: str, key: str | None, rank: int | None, score: int | None, total: int) -> str:
    """The wire form of a ``me`` message (``key`` only for a timed board)."""
    message: dict = {"type": "me", "version": max(0, int(version)), "period": period}
    if key is not None:
        message["key"] = key
    message.update(rank=rank, score=score, total=int(total))
    return json.dumps(message, separators=(",", ":"))


class StandingsFeed:
    """The watching sockets of one process, by board kind, and the reads that feed their ``me`` messages."""

    def __init__(self, app: Flask, boards: LocalBoards) -> None:
        self.app = app
        self.boards = boards
        self._lock = threading.Lock()
        self._watchers: dict[str, set] = {kind: set() for kind in KINDS}
        self._due: set[str] = set()
        self._read_at: dict[str, float] = dict.fromkeys(KINDS, -INTERVAL)
        self.wake = threading.Event()  # set when a kind becomes due; the relay's ticker waits on it

    def watching(self, period: str) -> int:
        """How many sockets of this process watch their standing on the board ``period``."""
        return len(self._watchers[period])

    def watch(self, subscriber) -> None:
        """From the socket's own thread: start sending it ``me`` messages; the first goes out now.

        The first is one read for this one viewer (a socket asks once); every later one comes from
        the shared reads. If Redis cannot answer now, the next shared read sends it.
        """
        with self._lock:
            self._watchers[subscriber.period].add(subscriber)
            subscriber.me_last = None
        try:
            standings, total, totals = self._read(subscriber.period, [subscriber.holder.user_id])
        except RedisError as exc:
            log.info("standing not read for a watching socket, the next read sends it: %s", exc)
            self.due(subscriber.period)
            return
        self._offer(subscriber, standings, total, totals, at_once=True)

    def unwatch(self, subscriber) -> None:
        """Forget a closed socket."""
        with self._lock:
            self._watchers[subscriber.period].discard(subscriber)

    def due(self, period: str) -> None:
        """A board of ``period`` was broadcast: read its standings soon (at most once a second)."""
        if self._watchers[period]:
            self._due.add(period)
            self.wake.set()

    def run(self, now: float | None = None) -> float:
        """Read every kind that is due (or unread for :data:`POLL` seconds) and send what changed.

        Runs on the relay's ticker thread, in an app context. Returns how long until a kind may be due.
        """
        now = time.monotonic() if now is None else now
        wait = POLL
        for period in KINDS:
            with self._lock:
                watchers = list(self._watchers[period])
            if not watchers:
                self._due.discard(period)
                continue
            since = now - self._read_at[period]
            if since < INTERVAL:
                wait = min(wait, INTERVAL - since)
                continue
            if period not in self._due and since < POLL:
                wait = min(wait, POLL - since)
                continue
            self._due.discard(period)
            self._read_at[period] = now
            try:
                standings, total, totals = self._read(period, sorted({s.holder.user_id for s in watchers}))
            except RedisError as exc:
                log.info("standings of the %s board not read, retrying: %s", period, exc)
                self._due.add(period)
                wait = min(wait, INTERVAL)
                continue
            deferred = sum(not self._offer(s, standings, total, totals) for s in watchers)
            if deferred:
                # Sent one less than a second ago: they get theirs at the next read.
                self._due.add(period)
                wait = min(wait, INTERVAL)
        return wait

    def _read(self, period: str, user_ids: list[str]) -> tuple[dict, int, dict]:
        """The current period's standings of ``user_ids`` on the board ``period``, its total, and the totals
        the held among them see (counting themselves)."""
        board = "" if period == ALL else resolve(period).board
        ranking = get_stores(self.app).ranking_for(board)
        standings: dict = {}
        for start in range(0, len(user_ids), CHUNK):
            standings.update(ranking.standings(user_ids[start : start + CHUNK]))
        total = ranking.total()
        totals: dict = {}
        for user_id, member in self._held(board, [u for u in user_ids if u not in standings]).items():
            standings[user_id], _, totals[user_id] = ranking.around_as_if(member, 0)
        return standings, total, totals

    @staticmethod
    def _held(board: str, unranked: list[str]) -> dict[str, str]:
        """The would-be members of the held users among ``unranked``; none while the database fails (logged)."""
        found: dict[str, str] = {}
        if not unranked:
            return found
        try:
            for start in range(0, len(unranked), CHUNK):
                found.update(held_members(board, unranked[start : start + CHUNK]))
        except SQLAlchemyError as exc:
            log.info("held watchers not looked up: %s", exc)
        finally:
            # The socket's own thread keeps its app context as long as the socket: never leave a transaction open.
            db.session.remove()
        return found

    def _offer(self, subscriber, standings: dict, total: int, totals: dict, at_once: bool = False) -> bool:
        """Send ``subscriber`` its standing if it changed; False when it must wait (sent under a second ago)."""
        standing = standings.get(subscriber.holder.user_id)
        total = totals.get(subscriber.holder.user_id, total)
        state = (standing.rank, standing.score, total) if standing is not None else (None, None, total)
        now = time.monotonic()
        with self._lock:
            if subscriber not in self._watchers[subscriber.period]:
                return True
            if state == subscriber.me_last:
                return True
            if not at_once and now - subscriber.me_at < INTERVAL:
                return False
            subscriber.me_last, subscriber.me_at = state, now
        period = subscriber.period
        board = self.boards[period]
        key = None if period == ALL else resolve(period).key
        subscriber.notify(me_message(board.version, period, key, *state), at_once)
        return True
