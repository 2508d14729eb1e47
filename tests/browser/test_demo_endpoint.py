"""The demo blueprint: off unless enabled; ``POST /demo/complete`` records a completion for the token's user only."""

import requests

from tests.support import bearer


class Client:
    """``requests`` against a base URL, shaped like the Flask test client."""

    def __init__(self, base):
        self.base = base

    def get(self, path, **kwargs):
        """GET ``path``."""
        return requests.get(self.base + path, timeout=10, **kwargs)

    def post(self, path, **kwargs):
        """POST ``path``."""
        return requests.post(self.base + path, timeout=10, **kwargs)


def test_the_demo_is_off_unless_enabled(client):
    # The session app has a database URL and no DEMO_ENABLED: neither the page nor the endpoint exist.
    assert client.get("/").status_code == 404
    assert client.post("/demo/complete", json={"action": "complete-lesson"}).status_code == 404
    # The widget itself is served either way.
    script = client.get("/static/live-scoreboard.js")
    assert script.status_code == 200 and b'customElements.define("live-scoreboard"' in script.data


def test_demo_completion_is_for_the_signed_in_user_and_claimed_through_the_real_endpoint(demo_stack, mint):
    client = Client(demo_stack)
    page = client.get("/")
    assert page.status_code == 200 and "<live-scoreboard" in page.text

    assert client.post("/demo/complete", json={"action": "complete-lesson"}).status_code == 401
    assert (
        client.post("/demo/complete", json={"action": "no-such-action"}, headers=bearer(mint("ann"))).status_code == 422
    )
    assert (
        client.post(
            "/demo/complete", json={"action": "complete-lesson", "userId": "someone-else"}, headers=bearer(mint("ann"))
        ).status_code
        == 400
    )

    recorded = client.post("/demo/complete", json={"action": "win-challenge"}, headers=bearer(mint("ann")))
    assert recorded.status_code == 201
    body = recorded.json()
    assert body["userId"] == "ann" and body["points"] == 250

    # Only that user can claim it, once, through the real claim endpoint.
    other = client.post("/api/action/do", json={"actionId": body["actionId"]}, headers=bearer(mint("ben")))
    assert other.status_code == 404
    claimed = client.post("/api/action/do", json={"actionId": body["actionId"]}, headers=bearer(mint("ann")))
    assert claimed.json() == {"success": True, "newScore": 250}
    again = client.post("/api/action/do", json={"actionId": body["actionId"]}, headers=bearer(mint("ann")))
    assert again.status_code == 409
