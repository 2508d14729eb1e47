"""The action catalog: load it from JSON or CSV, list it."""

import csv
import json
from pathlib import Path

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..extensions import db
from ..inputs import ActionKey
from ..models import Action

# The database column is a 32-bit integer: a bigger number is refused here, not by the database.
INT32_MAX = 2_147_483_647


class ActionSpec(BaseModel):
    """One catalog row as a file declares it. Strict: ``true`` is not a number, ``"1_000"`` not an integer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    key: ActionKey
    points: int = Field(ge=1, le=INT32_MAX)
    enabled: bool = True
    description: str = Field(default="", max_length=200)
    max_per_user_per_day: int | None = Field(default=None, ge=1, le=INT32_MAX, alias="maxPerUserPerDay")
    cooldown_seconds: int | None = Field(default=None, ge=1, le=INT32_MAX, alias="cooldownSeconds")


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; nothing was written. The message names every bad row."""


CSV_INTEGERS = ("points", "maxPerUserPerDay", "cooldownSeconds", "max_per_user_per_day", "cooldown_seconds")
CSV_BOOLEANS = {"true": True, "false": False}


def _typed_csv_row(row: dict[str, str]) -> dict[str, object]:
    """A CSV row's cells as JSON would give them: plain digits become integers, true/false booleans.

    Anything else stays text, so the strict model refuses it; a blank cell means "not given".
    """
    typed: dict[str, object] = {}
    for name, cell in row.items():
        if cell == "":
            continue
        if name in CSV_INTEGERS and cell.isascii() and cell.isdigit():
            typed[name] = int(cell)
        elif name == "enabled" and cell.lower() in CSV_BOOLEANS:
            typed[name] = CSV_BOOLEANS[cell.lower()]
        else:
            typed[name] = cell
    return typed


def _read_rows(path: Path) -> list:
    """The file's rows: a CSV's typed cells, or a JSON list (bare, or under ``"actions"``)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            return [
                _typed_csv_row({k.strip(): (v or "").strip() for k, v in row.items() if k})
                for row in csv.DictReader(fh)
            ]
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CatalogError(f"not valid JSON: {exc}") from None
    rows = data.get("actions") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise CatalogError('a catalog is a list of actions (or {"actions": [...]})')
    return rows


def read_catalog_file(path: str | Path) -> list[ActionSpec]:
    """Parse and check a JSON or CSV catalog file; every bad row is reported, none is returned."""
    rows = _read_rows(Path(path))
    specs, problems, max_points = [], [], current_app.config["MAX_ACTION_POINTS"]
    for number, row in enumerate(rows, start=1):
        label = f"entry {number}" + (
            f" ({row['key']})" if isinstance(row, dict) and isinstance(row.get("key"), str) else ""
        )
        try:
            spec = ActionSpec.model_validate(row)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False)
            )
            problems.append(f"{label}: {details}")
            continue
        if spec.points > max_points:
            problems.append(f"{label}: {spec.points} points is over the maximum of {max_points}")
            continue
        specs.append(spec)
    seen, duplicates = set(), set()
    for spec in specs:
        (duplicates if spec.key in seen else seen).add(spec.key)
    if duplicates:
        problems.append(f"duplicate action keys: {', '.join(sorted(duplicates))}")
    if problems:
        raise CatalogError("\n".join(problems))
    return specs


def load_catalog(path: str | Path) -> int:
    """Insert or update every action of the file in one transaction; returns the count."""
    specs = read_catalog_file(path)
    for spec in specs:
        db.session.merge(Action(**spec.model_dump(by_alias=False)))
    db.session.commit()
    return len(specs)


def enabled_actions() -> list[Action]:
    """The enabled catalog entries, by key."""
    return db.session.scalars(db.select(Action).where(Action.enabled).order_by(Action.key)).all()
