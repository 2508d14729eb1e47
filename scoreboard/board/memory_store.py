"""The board store in process memory, for the embedded single-process mode.

Same interface and semantics as :class:`~scoreboard.board.redis_store.RedisStore`;
one lock stands in for Redis's atomic scripts.
"""

import json
import threading
import time
from contextlib import contextmanager

from .entry import board_message, user_of


class MemoryStore:
    """Board state for one process."""

    def __init__(self):
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._listeners = []
        self._revoked = {}
        self.reset()
        self._published = None
        self._message = None
        self._version = 0
        self._pending = False
        self._last_refresh = 0.0

    def ping(self):
        """Always reachable."""

    def is_built(self):
        """Whether the mirror holds the whole ranking."""
        return self._built

    def reset(self):
        """Drop the mirror before a rebuild."""
        with self._lock:
            self._rank = {}  # member -> score
            self._state = {}  # user id -> (version, member)
            self._built = False

    def mark_built(self):
        """Record that a rebuild finished."""
        self._built = True

    def apply(self, entries):
        """Upsert entries newer than what is mirrored; returns how many were applied."""
        applied = 0
        with self._lock:
            for e in entries:
                version, member = self._state.get(e.user_id, (-1, None))
                if e.version <= version:
                    continue
                self._rank.pop(member, None)
                self._state[e.user_id] = (e.version, e.member if e.visible else None)
                if e.visible:
                    self._rank[e.member] = e.score
                applied += 1
        return applied

    def top(self, limit):
        """The top ``limit`` ``(user_id, score)`` pairs, in Redis's ZREVRANGE order."""
        with self._lock:
            best = sorted(self._rank.items(), key=lambda item: (item[1], item[0]), reverse=True)[:limit]
        return [(user_of(member), score) for member, score in best]

    def publish_if_changed(self, top_json, ttl, changed_at=None):
        """Cache and broadcast ``top_json`` if it changed; returns the new version or 0."""
        with self._lock:
            if top_json == self._published:
                return 0
            self._version = max(self._version + 1, int(time.time() * 1000))
            self._published = top_json
            self._message = board_message("update", self._version, top_json, changed_at)
            message, listeners = self._message, list(self._listeners)
        for listener in listeners:
            listener("board", message)
        return self._version

    def cached_board(self):
        """The last message as a dict, or None."""
        return json.loads(self._message) if self._message else None

    def version(self):
        """The version of the last broadcast."""
        return self._version

    def cache_if_absent(self, version, top_json, ttl):
        """Cache a top list read from the database unless a broadcast got there first."""
        with self._lock:
            if self._message is None:
                self._message = board_message("update", version, top_json)

    def audit(self, entries):
        """For each entry: ``(state, score of the member that state names, score of the entry's member)``."""
        results = []
        with self._lock:
            for e in entries:
                version, member = self._state.get(e.user_id, (None, None))
                state = None if version is None else f"{version}|{member or ''}"
                results.append((state, self._rank.get(member), self._rank.get(e.member)))
        return results

    def mirror_size(self):
        """``(state entries, ranking members)`` in the mirror."""
        with self._lock:
            return len(self._state), len(self._rank)

    def cache_consistent(self):
        """The cached message is always the one published here."""
        return True

    def invalidate_cache(self):
        """Forget the published top list, so the next publish re-broadcasts it."""
        with self._lock:
            self._published = None

    def claim_refresh_slot(self):
        """True if no recompute is queued yet."""
        with self._lock:
            taken, self._pending = self._pending, True
        return not taken

    def release_refresh_slot(self):
        """Let the next change queue a recompute."""
        self._pending = False

    @contextmanager
    def refresh_lock(self, timeout=30, wait=15):
        """One recompute at a time in this process."""
        if not self._refresh_lock.acquire(timeout=wait):
            raise TimeoutError("board refresh lock busy")
        try:
            yield
        finally:
            self._refresh_lock.release()

    def last_refresh_at(self):
        """When the last recompute started (epoch seconds)."""
        return self._last_refresh

    def mark_refresh(self):
        """Record that a recompute starts now, for the rate bound."""
        self._last_refresh = time.time()

    def revoke_token(self, jti, ttl):
        """Refuse the token ``jti`` until ``ttl`` seconds from now; returns when the revocation lapses."""
        lapses = time.time() + max(1, int(ttl))
        with self._lock:
            lapses = self._revoked[jti] = max(lapses, self._revoked.get(jti, 0))
            listeners = list(self._listeners)
        payload = json.dumps({"jti": jti, "exp": lapses})
        for listener in listeners:
            listener("revoked", payload)
        return lapses

    def is_token_revoked(self, jti):
        """Whether ``jti`` was revoked (and its revocation has not lapsed)."""
        return self._revoked.get(jti, 0) > time.time()

    def revoked_tokens(self):
        """Every revocation in force: ``{jti: lapse time}``."""
        now = time.time()
        with self._lock:
            return {jti: lapses for jti, lapses in self._revoked.items() if lapses > now}

    def listen(self, on_message, stop):
        """Call ``on_message(kind, payload)`` for every broadcast and revocation until ``stop`` is set."""
        with self._lock:
            self._listeners.append(on_message)
        try:
            on_message("subscribed", None)
            stop.wait()
        finally:
            with self._lock:
                self._listeners.remove(on_message)
