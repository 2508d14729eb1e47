"""The claim statements run prepared on their connections (``scoreboard.ops.prepared``), on the real PostgreSQL."""

from sqlalchemy import text

from scoreboard.extensions import db
from scoreboard.ops import prepared
from tests.scoring.test_claim_batching import new_completion
from tests.support import bearer


def held_by_the_claims_pool(app):
    """The prepared statements of every idle connection of the claims pool, and how many such connections."""
    with app.app_context():
        engine = db.engines["claims"]
        names, connections = set(), 0
        # Check every idle connection out at once (the pool hands out the same one again otherwise).
        conns = []
        try:
            while engine.pool.checkedin():
                conns.append(engine.connect())
            for conn in conns:
                connections += 1
                names |= set(conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars())
        finally:
            for conn in conns:
                conn.close()
        return names, connections


def claim(app, client, mint, user):
    action_id = new_completion(app, user)
    return client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(mint(user)))


def test_a_claim_runs_as_the_connections_prepared_statement(app, client, mint):
    with app.app_context():
        db.engines["claims"].dispose()  # only the connections the claims below open
    first = claim(app, client, mint, "prep-a")
    assert first.get_json() == {"success": True, "newScore": 50}
    names, connections = held_by_the_claims_pool(app)
    assert connections >= 1 and "claim_one" in names
    # The next claims reuse it: still one statement of that name, and the score keeps rising exactly.
    for expected in (100, 150):
        assert claim(app, client, mint, "prep-a").get_json() == {"success": True, "newScore": expected}


def test_a_connection_that_lost_its_statement_prepares_it_again(app, client, mint):
    with app.app_context(), db.engines["claims"].connect() as conn:
        sql = "SELECT CAST(%(a)s AS integer) + 1"
        assert prepared.execute(conn, "probe", sql, {"a": 1}).scalar() == 2
        conn.exec_driver_sql("DEALLOCATE ALL")  # as a pooler's reset, or DISCARD ALL, would
        # The connection's record still names the statement: the run meets "does not exist", prepares, runs once.
        assert prepared.execute(conn, "probe", sql, {"a": 41}).scalar() == 42
        assert conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars().all() == ["probe"]
    # And claims keep working on every connection of the pool, whatever each holds.
    assert claim(app, client, mint, "prep-b").get_json() == {"success": True, "newScore": 50}
    with app.app_context(), db.engines["claims"].connect() as conn:
        conn.exec_driver_sql("DEALLOCATE ALL")
    assert claim(app, client, mint, "prep-b").get_json() == {"success": True, "newScore": 100}


def test_switched_off_the_claim_is_sent_as_text(app, client, mint):
    with app.app_context():
        db.engines["claims"].dispose()  # fresh connections, holding nothing
    app.config["DB_PREPARED_STATEMENTS"] = False
    try:
        r = claim(app, client, mint, "prep-c")
        assert r.status_code == 200 and r.get_json()["newScore"] == 50
        names, connections = held_by_the_claims_pool(app)
        assert connections >= 1 and names == set()
    finally:
        app.config["DB_PREPARED_STATEMENTS"] = True


def test_the_claims_text_and_its_prepared_form_agree_on_a_refusal(app, client, mint):
    """A replay is refused the same way either way (the prepared statement matches nothing, as the text would)."""
    action_id = new_completion(app, "prep-d")
    token = mint("prep-d")
    assert client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(token)).status_code == 200
    again = client.post("/api/action/do", json={"actionId": action_id}, headers=bearer(token))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_claimed"
    with app.app_context():
        score = db.session.scalar(text("SELECT score FROM scores WHERE user_id = 'prep-d'"))
        db.session.rollback()
    assert score == 50
