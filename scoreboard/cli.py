"""``flask`` commands for operators: tokens, users, the action catalog, the board, the anomaly scan."""

import json
from datetime import datetime

import click
from flask import current_app
from flask.cli import AppGroup
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from config import parse_duration

from .extensions import db
from .inputs import DisplayName, UserId
from .models import Action, User
from .scoring.catalog import CatalogError, load_catalog
from .scoring.completions import ensure_user
from .security.passwords import hash_password
from .security.tokens import ROLES, mint_token
from .stores import get_stores

tokens = AppGroup("tokens", help="Mint access tokens for local use.")
users = AppGroup("users", help="Manage local accounts.")
actions = AppGroup("actions", help="Manage the action catalog.")
board_cli = AppGroup("board", help="Maintain the Redis board mirror.")
anomalies = AppGroup("anomalies", help="The anomaly scan: players that behave like bots.")


@tokens.command("mint")
@click.argument("user_id")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), help="Grant a role (repeatable).")
@click.option("--expires", default="1h", show_default=True, help="Lifetime, e.g. 90s, 15m, 1h, 7d.")
def mint(user_id, roles, expires):
    """Print a signed access token for USER_ID."""
    if current_app.config["JWT_ALGORITHM"] == "RS256" and not current_app.config.get("JWT_PRIVATE_KEY"):
        raise click.ClickException("RS256 tokens are minted with SCOREBOARD_JWT_PRIVATE_KEY, which is not set.")
    click.echo(mint_token(user_id, roles, parse_duration(expires)))


@users.command("create")
@click.argument("username")
@click.option("--password", default=None, help="The password (asked for when not given).")
@click.option("--display-name", default=None, help="Name shown on the board (default: the username).")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), help="Grant a role at login (repeatable).")
@click.option("--reset-password", is_flag=True, help="The account exists: replace its password (and roles, if given).")
@click.option("--exist-ok", is_flag=True, help="The account exists: leave it as it is and succeed.")
def create_user(username, password, display_name, roles, reset_password, exist_ok):
    """Create a local account USERNAME. An existing account's password is changed only with --reset-password."""
    username = _valid(UserId, username, "USERNAME")
    display_name = None if display_name is None else _valid(DisplayName, display_name, "--display-name")
    user = db.session.get(User, username)
    exists = user is not None and user.password_hash is not None
    if exists and not reset_password:
        if exist_ok:
            click.echo(f"user {username} exists; left unchanged")
            return
        raise click.ClickException(
            f"user {username} already exists; its password was not changed (pass --reset-password to replace it)"
        )
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    ensure_user(username, display_name)
    user = db.session.get(User, username)
    user.password_hash = hash_password(password)
    if roles or not exists:
        user.roles = ",".join(roles)
    db.session.commit()
    click.echo(f"user {username} {'password reset' if exists else 'created'}")


def _valid(kind, value, name):
    """``value`` as the API would accept it (the same types), or a usage error saying why not."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"], param_hint=name) from None


@actions.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def load(path):
    """Load the catalog from a JSON or CSV file (inserts and updates; nothing is deleted)."""
    try:
        count = load_catalog(path)
    except CatalogError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    click.echo(f"loaded {count} actions from {path}")


@actions.command("list")
def list_actions():
    """Print the catalog."""
    for action in db.session.scalars(select(Action).order_by(Action.key)):
        state = "enabled" if action.enabled else "disabled"
        click.echo(f"{action.key:24} {action.points:>7}  {state:8}  {action.description}")


@board_cli.command("rebuild")
def rebuild():
    """Rebuild the Redis mirror from the database and broadcast the result."""
    from .board.refresh import refresh_board

    version = refresh_board(rebuild=True)
    click.echo(f"board rebuilt (broadcast version {version or 'unchanged'})")


@anomalies.command("scan")
@click.option("--dry-run", is_flag=True, help="Judge and print, change nothing; also print the last real scan.")
@click.option("--end", default=None, help="Judge the window ending at this ISO 8601 time with a zone (default: now).")
def scan(dry_run, end):
    """Judge the window's players now; one JSON line per new suspect, then the scan's summary."""
    # Imported here: the model's libraries load only for this command, not for every flask command.
    from .board.refresh import refresh_board
    from .integrity.scan import last_scan, run_scan

    moment = None
    if end is not None:
        try:
            moment = datetime.fromisoformat(end)
        except ValueError:
            raise click.BadParameter("not an ISO 8601 time", param_hint="--end") from None
        if moment.tzinfo is None:
            raise click.BadParameter("give a zone, e.g. 2026-12-02T10:00:00+00:00", param_hint="--end")
    if dry_run:
        previous = last_scan()
        click.echo(json.dumps({"lastScan": previous}))
    summary = run_scan(dry_run=dry_run, now=moment)
    for found in summary.flagged:
        click.echo(json.dumps({"suspect": found}))
    # The held leave the boards now (the beat sweep would within seconds). Not on the in-process stores: this
    # process's mirror is not the server's, which picks the change up (still flagged) at its next refresh.
    if summary.held and not get_stores().embedded:
        refresh_board()
    click.echo(json.dumps({"scan": summary.to_dict()}))
    if summary.population_too_small:
        click.echo(
            f"{summary.judged} users judged, fewer than SCOREBOARD_ANOMALY_MIN_POPULATION={summary.min_population}: "
            "nobody flagged",
            err=True,
        )


def init_app(app):
    """Register the command groups."""
    for group in (tokens, users, actions, board_cli, anomalies):
        app.cli.add_command(group)
