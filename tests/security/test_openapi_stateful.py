"""Stateful schemathesis: chains that follow the document's links (completion -> claim -> board).

Every answer in a chain is checked against the document, and two invariants hold at every step:
a recorded actionId is claimed successfully at most once, and a claim raises the user's score by
exactly the completion's points.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth

from tests.conftest import reset_state
from tests.security.test_openapi import CHECKS
from tests.support import bearer

FLOW = r"^/api/(actions/completions|action/do|score/top)$"
CATALOG = ("complete-lesson", "win-challenge", "share-result")
# Every call carries a valid token of the right user (set below), which ignored_auth would take for a
# generated one being accepted; test_openapi.py runs that check on its own.
FLOW_CHECKS = [check for check in CHECKS if check is not ignored_auth]


@pytest.fixture
def flow_machine(app, mint, redis_client):
    """The document's state machine over the claim flow, with the right token for every call."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app).include(path_regex=FLOW)
    service = bearer(mint("site-backend", "service"))

    class ClaimFlow(schema.as_state_machine()):
        claims_won = 0  # across every scenario: the chains must really reach successful claims

        def setup(self):
            # Each scenario starts from the same empty state, so the same choices give the same answers.
            reset_state(app, redis_client)
            self.completions = {}  # actionId -> (userId, points), from the answers
            self.claimed = set()
            self.scores = {}  # userId -> score, as the claims answered it

        def before_call(self, case):
            # Random action keys are valid by the schema but never in the catalog: steer the recorded
            # completions onto real actions, so chains go on to claims.
            if case.path == "/api/actions/completions" and isinstance(case.body, dict):
                case.body = {**case.body, "action": CATALOG[len(self.completions) % len(CATALOG)]}

        def get_call_kwargs(self, case):
            if case.path == "/api/actions/completions":
                return {"headers": service}
            if case.path == "/api/action/do" and isinstance(case.body, dict):
                owner = self.completions.get(case.body.get("actionId"), ("u1", 0))[0]
                return {"headers": bearer(mint(owner))}
            return {"headers": bearer(mint("u1"))}

        def after_call(self, response, case):
            super().after_call(response, case)
            if case.path == "/api/actions/completions" and response.status_code in (200, 201):
                body = response.json()
                self.completions[body["actionId"]] = (body["userId"], body["points"])
            if case.path == "/api/action/do" and response.status_code == 200:
                action_id = case.body["actionId"]
                assert action_id not in self.claimed, "an actionId was claimed twice"
                self.claimed.add(action_id)
                type(self).claims_won += 1
                user, points = self.completions[action_id]
                new_score = response.json()["newScore"]
                if user in self.scores:
                    assert new_score == self.scores[user] + points
                self.scores[user] = new_score

        def validate_response(self, response, case, **kwargs):
            case.validate_response(
                response, checks=FLOW_CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    return ClaimFlow


def test_chains_of_completion_claim_and_board_conform_and_claim_once(flow_machine):
    flow_machine.run(
        settings=settings(
            max_examples=25, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
    assert flow_machine.claims_won >= 5, "the chains hardly ever followed a completion to its claim"
