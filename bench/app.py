"""The production app plus one empty route, the benchmark's yardstick: ``gunicorn ... bench.app:app``."""

from wsgi import app


@app.get("/bench/empty")
def empty():
    """Nothing: the cost of a request through the app's hooks and default limits, and no more."""
    return ""
