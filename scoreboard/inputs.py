"""What the service accepts from outside, as pydantic types: one definition each, used by every input.

Identifiers are short and plain, so they are safe in keys, URLs and logs. Names and reasons are
free text shown to people: normalised, and refused when they could pass for something else.
"""

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

# A user id is the JWT ``sub`` of the site's auth server.
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
ACTION_KEY_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# An actionId is ``secrets.token_urlsafe``: URL-safe base64.
ACTION_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_ID_LENGTH = 64
MAX_DISPLAY_NAME = 80
MIN_REASON_VISIBLE = 3

# Control, format (bidi overrides, zero-width), private-use, surrogate and unassigned characters,
# and line or paragraph separators: invisible, or able to make a name read as another.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def clean_display_name(value: str) -> str:
    """NFKC-normalised and trimmed; no hidden or direction-changing characters; 1 to 80 characters."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise ValueError("must not be blank")
    if any(unicodedata.category(ch) in HIDDEN_CATEGORIES for ch in value):
        raise ValueError("must not contain control, invisible or text-direction characters")
    if len(value) > MAX_DISPLAY_NAME:
        raise ValueError(f"must be at most {MAX_DISPLAY_NAME} characters once normalised")
    return value


def visible_text(value: str) -> str:
    """Trimmed text with at least three visible characters (not spaces, not invisible characters)."""
    visible = sum(1 for ch in value if not ch.isspace() and unicodedata.category(ch) not in HIDDEN_CATEGORIES)
    if visible < MIN_REASON_VISIBLE:
        raise ValueError(f"must contain at least {MIN_REASON_VISIBLE} visible characters")
    return value.strip()


UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=USER_ID_PATTERN)]
ActionKey = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ACTION_KEY_PATTERN)]
ActionId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ACTION_ID_PATTERN)]
DisplayName = Annotated[str, Field(min_length=1, max_length=4 * MAX_DISPLAY_NAME), AfterValidator(clean_display_name)]
Reason = Annotated[str, Field(min_length=MIN_REASON_VISIBLE, max_length=500), AfterValidator(visible_text)]
