"""The README's API examples, run as the chain they are written as, against a live stack.

The fenced ``sh`` blocks between ``<!-- curl-chain -->`` and ``<!-- /curl-chain -->`` in
README.md run in order in one bash session (gunicorn and a Celery worker on the test
database, ``flask tokens mint`` with the same settings), with ``BASE`` pointed at the
stack. Every command must succeed, every curl must get a 2xx answer, and every claim
must answer ``"success": true``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- curl-chain -->", "<!-- /curl-chain -->"

# Run before the README's commands: stop at the first failure, trace each command (to stderr), and make
# curl fail on an HTTP error and end each answer with a newline, so that every answer is one line.
PRELUDE = """\
set -euo pipefail
set -x
curl() { command curl --fail-with-body --show-error "$@"; local rc=$?; echo; return $rc; }
"""


def readme_chain():
    """The shell text of the README's curl chain, its blocks joined in order."""
    text = (ROOT / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} ... {END} section"
    section = text.split(START, 1)[1].split(END, 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert blocks, "no ```sh blocks in the README's curl chain"
    return "\n".join(blocks)


def tail(text, lines=40, width=300):
    """The last lines of some output, each cut short (the OpenAPI document is one long line)."""
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


def test_chain_is_extracted_with_a_base_and_a_claim():
    """The chain sets BASE once, mints its tokens, and claims the actionId it was given."""
    chain = readme_chain()
    assert len(re.findall(r"^BASE=", chain, re.M)) == 1
    for name, role in (("SERVICE", "--role service"), ("ADMIN", "--role admin"), ("TOKEN", "")):
        assert re.search(rf"^{name}=\$\(flask tokens mint \S+ ?{role}\)", chain, re.M), name
    assert "/api/action/do" in chain and "$ACTION_ID" in chain
    assert "localhost:5000" not in chain and "Jx3..." not in chain


def test_readme_curl_chain_runs_against_a_live_stack(live_stack, stack_env):
    chain = readme_chain()
    chain = re.sub(r"^BASE=\S+", f"BASE={live_stack}", chain, count=1, flags=re.M)
    env = {
        **stack_env,
        "FLASK_APP": "wsgi",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["bash", "-c", PRELUDE + chain], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    report = f"stdout:\n{tail(result.stdout)}\nstderr (the commands run):\n{tail(result.stderr)}"
    assert result.returncode == 0, f"the README's curl chain failed (exit {result.returncode})\n{report}"

    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(("{", "["))]
    claims = [a for a in answers if isinstance(a, dict) and "success" in a]
    assert len(claims) == chain.count("/api/action/do") >= 1, report
    for claim in claims:
        assert claim["success"] is True and isinstance(claim["newScore"], int), claim
    completions = [a for a in answers if isinstance(a, dict) and "actionId" in a and "status" in a]
    assert {c["userId"] for c in completions} >= {"alice", "mallory"}, report
    assert {"status": "banned", "userId": "mallory"} in answers, report
