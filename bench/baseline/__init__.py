"""The baseline: the straightforward design, served beside the scoreboard under the same load (``bench.baseline.app``).

Each claim updates the database, recomputes the top 10 with a SQL query and broadcasts it
synchronously; each read queries the database. ``setup`` builds its database from the bench's and
starts it with the production gunicorn settings.
"""
