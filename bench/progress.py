"""Progress lines on stderr, so that stdout carries only the table."""

import sys
import time


def log(message: str) -> None:
    """Print one progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
