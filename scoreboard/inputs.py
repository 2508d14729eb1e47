"""What the service accepts from outside, as pydantic types: one definition each, used by every input.

Identifiers are short and plain, so they are safe in keys, URLs and logs. Names and reasons are
free text shown to people: normalised, and refused when they could pass for something else.
"""

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

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


# --- query strings ------------------------------------------------------------------------------

MAX_IDS = 100
_DIGITS = re.compile(r"[0-9]{1,9}")


def whole_number(value: object) -> object:
    """A query value as an int when it is plain ASCII digits; anything else (``+5``, ``5.0``, ``1_0``) refused.

    Python's ``int()`` (and so pydantic's lax mode) reads signs, underscores, spaces and other scripts'
    digits; a query parameter that means a count should be spelled one way only.
    """
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written in digits")
        return int(value)
    return value


def id_list(value: object) -> object:
    """``a,b,c`` as ``["a", "b", "c"]`` (each id is then checked as a :data:`UserId`)."""
    if isinstance(value, str):
        return value.split(",")
    return value


QueryInt = Annotated[int, BeforeValidator(whole_number)]
# The JSON Schema clients see: one string of comma-separated ids, as it is sent.
_ID = rf"{USER_ID_PATTERN[1:-2]}{{1,{MAX_ID_LENGTH}}}"  # the pattern's character class, 1 to 64 of them
ID_LIST_PATTERN = rf"^{_ID}(,{_ID}){{0,{MAX_IDS - 1}}}$"
UserIdList = Annotated[
    list[UserId],
    BeforeValidator(id_list),
    Field(min_length=1, max_length=MAX_IDS),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDS * (MAX_ID_LENGTH + 1) - 1,
            "pattern": ID_LIST_PATTERN,
        }
    ),
]
