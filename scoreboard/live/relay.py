"""The per-process relay between the board's pub/sub channel and the open sockets.

One listener thread per process subscribes once; each socket gets a mailbox that
keeps only the latest message, so a slow client skips stale boards instead of
queueing them and never holds up the others.
"""

import json
import logging
import threading

log = logging.getLogger(__name__)


class Mailbox:
    """Holds the latest undelivered ``(version, message)`` for one socket."""

    __slots__ = ("_cond", "_item")

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._item = None

    def put(self, item):
        """Replace whatever was waiting with ``item``."""
        with self._cond:
            self._item = item
            self._cond.notify()

    def get(self, timeout):
        """The waiting message, waiting up to ``timeout`` seconds; None if none came."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


class Relay:
    """Fans broadcast messages out to the mailboxes of this process's sockets."""

    def __init__(self, app, store):
        self.app = app
        self.store = store
        self.version = -1
        self.message = None  # the latest message as sent, serialised once
        self.healthy = False  # subscribed and hearing every broadcast
        self._mailboxes = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Start the listener thread once per process (lazily, so after any fork)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="board-relay", daemon=True)
                self._thread.start()

    def stop(self):
        """Stop listening (the thread exits within a second)."""
        self._stop.set()

    def register(self):
        """A new mailbox for a socket."""
        mailbox = Mailbox()
        with self._lock:
            self._mailboxes.add(mailbox)
        return mailbox

    def unregister(self, mailbox):
        """Forget a closed socket's mailbox."""
        with self._lock:
            self._mailboxes.discard(mailbox)

    @property
    def socket_count(self):
        """Open sockets in this process."""
        return len(self._mailboxes)

    def deliver(self, message):
        """Pass ``message`` to every mailbox if it is newer than what was last relayed."""
        version = json.loads(message)["version"]
        with self._lock:
            if version <= self.version:
                return False
            self.version, self.message = version, message
            mailboxes = list(self._mailboxes)
        for mailbox in mailboxes:
            mailbox.put((version, message))
        return True

    def _resync(self):
        """After (re)subscribing, catch up on anything broadcast while not listening."""
        from ..board.pipeline import dumps, read_board

        with self.app.app_context():
            board = read_board()
        self.deliver(f'{{"type":"update","version":{int(board["version"])},"top":{dumps(board["top"])}}}')

    def _on_message(self, message):
        if message is None:
            self.healthy = True
            self._resync()
        else:
            self.deliver(message)

    def _run(self):
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self.store.listen(self._on_message, self._stop)
                backoff = 0.2
            except Exception as exc:  # Redis gone: keep sockets open, retry, re-sync on return
                self.healthy = False
                log.warning("board relay lost its subscription, retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.healthy = False


def get_relay(app):
    """The process's relay (created on first use)."""
    relay = app.extensions.get("scoreboard.relay")
    if relay is None:
        relay = app.extensions["scoreboard.relay"] = Relay(app, app.extensions["scoreboard.store"])
    return relay
