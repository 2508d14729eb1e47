"""The action catalog: load it from JSON or CSV, list it."""

import csv
import json
from pathlib import Path

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..extensions import db
from ..ids import ActionKey
from ..models import Action


class ActionSpec(BaseModel):
    """One catalog row as a file declares it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: ActionKey
    points: int = Field(ge=1)
    enabled: bool = True
    description: str = Field(default="", max_length=200)
    max_per_user_per_day: int | None = Field(default=None, ge=1, alias="maxPerUserPerDay")
    cooldown_seconds: int | None = Field(default=None, ge=1, alias="cooldownSeconds")

    @field_validator("max_per_user_per_day", "cooldown_seconds", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if value == "" else value


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; nothing was written."""


def read_catalog_file(path: str | Path) -> list[ActionSpec]:
    """Parse a JSON (list of objects, or ``{"actions": [...]}``) or CSV catalog file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)]
    else:
        data = json.loads(path.read_text())
        rows = data["actions"] if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise CatalogError("a catalog is a list of actions")
    specs, max_points = [], current_app.config["MAX_ACTION_POINTS"]
    for number, row in enumerate(rows, start=1):
        try:
            spec = ActionSpec.model_validate(row)
        except ValidationError as exc:
            raise CatalogError(f"entry {number}: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})") from exc
        if spec.points > max_points:
            raise CatalogError(f"entry {number}: {spec.points} points is over the maximum of {max_points}")
        specs.append(spec)
    keys = [s.key for s in specs]
    if len(keys) != len(set(keys)):
        raise CatalogError("duplicate action keys")
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
