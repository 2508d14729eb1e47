"""The board store on Redis, shared by every web process and worker.

Keys (``<p>`` is ``SCOREBOARD_REDIS_PREFIX``, default ``scoreboard:``):

==========================  ======  ===========================================================
``<p>rank``                 zset    score -> ``<inverted reached time>:<user id>``, visible users
``<p>rank:state``           hash    user id -> ``<version>|<member>``: guards against stale writes
``<p>rank:built``           string  set once ``rank`` has been rebuilt from the database
``<p>top``                  string  the last broadcast message (JSON), TTL ``SCOREBOARD_TOP_CACHE_TTL``
``<p>top:published``        string  the last broadcast top list, to publish only on change
``<p>top:version``          string  broadcast version: max(previous + 1, now in ms)
``<p>refresh:pending``      string  single-flight flag: a recompute is queued (TTL 30 s)
``<p>refresh:lock``         lock    held while a recompute runs
``<p>refresh:last``         string  when the last recompute started (ms), to bound the rate
``<p>stats:recomputes``     string  recomputes run so far (a counter, for the benchmark and ops)
``<p>revoked``              zset    revoked token ``jti`` -> when its revocation lapses (epoch s)
``<p>board`` (channel)      pub/sub every broadcast message
``<p>revoked`` (channel)    pub/sub every revocation, ``{"jti", "exp"}``, for the processes' copies
==========================  ======  ===========================================================
"""

import json
import logging
import threading
import time
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from .entry import board_message, user_of

log = logging.getLogger(__name__)

APPLY = """
local applied = 0
for i = 1, #ARGV, 5 do
  local uid, score, member, ver, visible = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local cur = redis.call('HGET', KEYS[2], uid)
  local curver, curmember = -1, ''
  if cur then
    local sep = string.find(cur, '|', 1, true)
    curver = tonumber(string.sub(cur, 1, sep - 1))
    curmember = string.sub(cur, sep + 1)
  end
  if ver > curver then
    if curmember ~= '' then redis.call('ZREM', KEYS[1], curmember) end
    if visible == '1' then redis.call('ZADD', KEYS[1], score, member) else member = '' end
    redis.call('HSET', KEYS[2], uid, ver .. '|' .. member)
    applied = applied + 1
  end
end
return applied
"""

PUBLISH_IF_CHANGED = """
local function message(version, extra)
  return '{"type":"update","version":' .. version .. ',"top":' .. ARGV[1] .. extra .. '}'
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], message(redis.call('GET', KEYS[3]) or '0', ''), 'EX', ARGV[2])
  end
  return 0
end
-- Never below the wall clock in ms: versions keep growing even if Redis loses its data.
local version = redis.call('INCR', KEYS[3])
local now = tonumber(ARGV[4])
if now > version then
  version = now
  redis.call('SET', KEYS[3], version)
end
-- changedAt: when the oldest change in this broadcast was claimed (ms), for the lag metric.
local payload = message(version, ARGV[5] ~= '' and (',"changedAt":' .. ARGV[5]) or '')
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], payload, 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], payload)
return version
"""


class RedisStore:
    """Board state in Redis; every multi-key change is one Lua script, so atomic."""

    def __init__(self, url, prefix):
        self.redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2, health_check_interval=15
        )
        self.prefix = prefix
        self.channel = f"{prefix}board"
        self.revocations_channel = f"{prefix}revoked"
        k = self.key
        self.keys = {
            n: k(n)
            for n in (
                "rank",
                "rank:state",
                "rank:built",
                "top",
                "top:published",
                "top:version",
                "refresh:pending",
                "refresh:lock",
                "refresh:last",
                "stats:recomputes",
                "revoked",
            )
        }
        self._apply = self.redis.register_script(APPLY)
        self._publish = self.redis.register_script(PUBLISH_IF_CHANGED)

    def key(self, name):
        """The full Redis key for ``name``."""
        return f"{self.prefix}{name}"

    def ping(self):
        """Raise if Redis cannot be reached."""
        self.redis.ping()

    # The ranking mirror.
    def is_built(self):
        """Whether the mirror holds the whole ranking."""
        return bool(self.redis.exists(self.keys["rank:built"]))

    def reset(self):
        """Drop the mirror before a rebuild."""
        self.redis.delete(self.keys["rank"], self.keys["rank:state"], self.keys["rank:built"])

    def mark_built(self):
        """Record that a rebuild finished."""
        self.redis.set(self.keys["rank:built"], "1")

    def apply(self, entries):
        """Upsert entries; each is applied only if newer than what is mirrored. Returns how many were."""
        args = []
        for e in entries:
            args += [e.user_id, e.score, e.member, e.version, "1" if e.visible else "0"]
        if not args:
            return 0
        return int(self._apply(keys=[self.keys["rank"], self.keys["rank:state"]], args=args))

    def top(self, limit):
        """The top ``limit`` ``(user_id, score)`` pairs of the mirror."""
        rows = self.redis.zrevrange(self.keys["rank"], 0, limit - 1, withscores=True)
        return [(user_of(member), int(score)) for member, score in rows]

    # The cached, broadcast top list.
    def publish_if_changed(self, top_json, ttl, changed_at=None):
        """Cache and broadcast ``top_json`` if it differs from the last broadcast; returns the new version or 0.

        ``changed_at`` (epoch ms of the oldest change it carries) rides along as ``changedAt``.
        """
        keys = [self.keys["top:published"], self.keys["top"], self.keys["top:version"]]
        changed = "" if changed_at is None else int(changed_at)
        return int(self._publish(keys=keys, args=[top_json, ttl, self.channel, int(time.time() * 1000), changed]))

    def cached_board(self):
        """The cached last message as a dict, or None on a miss."""
        payload = self.redis.get(self.keys["top"])
        return json.loads(payload) if payload else None

    def version(self):
        """The version of the last broadcast."""
        return int(self.redis.get(self.keys["top:version"]) or 0)

    def cache_if_absent(self, version, top_json, ttl):
        """Re-cache a top list read from the database, unless a broadcast got there first."""
        self.redis.set(self.keys["top"], board_message("update", version, top_json), ex=ttl, nx=True)

    # Coalescing.
    def claim_refresh_slot(self):
        """True if no recompute is queued yet: the caller should queue one."""
        return bool(self.redis.set(self.keys["refresh:pending"], "1", nx=True, ex=30))

    def release_refresh_slot(self):
        """Let the next change queue a recompute."""
        self.redis.delete(self.keys["refresh:pending"])

    @contextmanager
    def refresh_lock(self, timeout=4, wait=15):
        """A lock so one recompute runs at a time across all workers.

        Its TTL is short and renewed every ``timeout / 3`` seconds while the recompute runs, so
        a worker killed mid-run (SIGKILL, out of memory) holds the others up for ``timeout``
        seconds at most, however long a rebuild may take.
        """
        # Not thread-local: the renewal thread must see the token the recompute's thread acquired.
        lock = self.redis.lock(self.keys["refresh:lock"], timeout=timeout, blocking_timeout=wait, thread_local=False)
        if not lock.acquire():
            raise LockError("board refresh lock busy")
        done = threading.Event()

        def renew():
            while not done.wait(timeout / 3):
                try:
                    lock.reacquire()
                except Exception as exc:  # Redis gone or lock lost: the recompute fails or finishes alone
                    log.warning("board refresh lock not renewed: %s", exc)
                    return

        renewer = threading.Thread(target=renew, name="refresh-lock-renewal", daemon=True)
        renewer.start()
        try:
            yield lock
        finally:
            done.set()
            renewer.join(timeout)
            try:
                lock.release()
            except LockError as exc:  # it expired: another recompute may have run alongside this one
                log.warning("board refresh lock had expired before release: %s", exc)

    # Reconcile's audit.
    def audit(self, entries):
        """For each entry: ``(state, score of the member that state names, score of the entry's member)``.

        ``state`` is the mirrored ``"<version>|<member>"`` (None if absent); a score is None
        when that member is not in the ranking.
        """
        if not entries:
            return []
        states = self.redis.hmget(self.keys["rank:state"], [e.user_id for e in entries])
        named = [state.split("|", 1)[1] if state else "" for state in states]
        scores = iter(self.redis.zmscore(self.keys["rank"], [m for m in named if m] + [e.member for e in entries]))
        by_state = [next(scores) if member else None for member in named]
        return [(state, score, next(scores)) for state, score in zip(states, by_state)]

    def mirror_size(self):
        """``(state entries, ranking members)`` in the mirror."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hlen(self.keys["rank:state"])
            pipe.zcard(self.keys["rank"])
            return tuple(pipe.execute())

    def cache_consistent(self):
        """False if the cached top list differs from the last one published (a miss is not drift)."""
        cached, published = self.redis.mget(self.keys["top"], self.keys["top:published"])
        return cached is None or published is None or json.loads(cached)["top"] == json.loads(published)

    def invalidate_cache(self):
        """Forget the cached and published top list, so the next publish re-caches and re-broadcasts it."""
        self.redis.delete(self.keys["top"], self.keys["top:published"])

    def last_refresh_at(self):
        """When the last recompute started (epoch seconds), or 0."""
        return int(self.redis.get(self.keys["refresh:last"]) or 0) / 1000

    def mark_refresh(self):
        """Record that a recompute starts now, for the rate bound, and count it."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys["refresh:last"], int(time.time() * 1000), ex=60)
            pipe.incr(self.keys["stats:recomputes"])
            pipe.execute()

    # Token revocation (logout, bans): a sorted set of jti -> lapse time, announced on a channel so every
    # process keeps a copy and checks tokens without a round trip.
    def revoke_token(self, jti, ttl):
        """Refuse the token ``jti`` for ``ttl`` seconds from now; returns when the revocation lapses."""
        now = time.time()
        lapses = now + max(1, int(ttl))
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.keys["revoked"], "-inf", now)
            pipe.zadd(self.keys["revoked"], {jti: lapses}, gt=True)  # adds, or only ever extends
            pipe.publish(self.revocations_channel, json.dumps({"jti": jti, "exp": lapses}))
            pipe.execute()
        return lapses

    def is_token_revoked(self, jti):
        """Whether ``jti`` was revoked (and its revocation has not lapsed)."""
        lapses = self.redis.zscore(self.keys["revoked"], jti)
        return lapses is not None and lapses > time.time()

    def revoked_tokens(self):
        """Every revocation in force: ``{jti: lapse time}``."""
        rows = self.redis.zrangebyscore(self.keys["revoked"], f"({time.time()}", "+inf", withscores=True)
        return dict(rows)

    # Pub/sub.
    def listen(self, on_message, stop):
        """Call ``on_message(kind, payload)`` until ``stop`` is set; raises if Redis drops.

        ``kind`` is ``"subscribed"`` once listening (the caller re-syncs what it may have
        missed), ``"revoked"`` for each revocation and ``"board"`` for a broadcast.
        Broadcasts that queued up while the previous one was being handed out are
        skipped for the newest: each is a whole board, so only the latest matters,
        and a fan-out slower than the broadcast rate never falls further behind.
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel, self.revocations_channel)
            on_message("subscribed", None)
            while not stop.is_set():
                latest = None
                message = pubsub.get_message(timeout=1.0)
                while message is not None:
                    if message["type"] == "message":
                        if message["channel"] == self.channel:
                            latest = message["data"]
                        else:
                            on_message("revoked", message["data"])
                    message = pubsub.get_message(timeout=0)
                if latest is not None:
                    on_message("board", latest)
        finally:
            pubsub.close()
