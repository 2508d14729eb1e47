"""The identifiers the service accepts, as pydantic types: one definition each, used by every input."""

from typing import Annotated

from pydantic import Field

# A user id is the JWT ``sub`` of the site's auth server: short and plain, so it is safe in keys and logs.
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
ACTION_KEY_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# An actionId is ``secrets.token_urlsafe``: URL-safe base64.
ACTION_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_ID_LENGTH = 64

UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=USER_ID_PATTERN)]
ActionKey = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ACTION_KEY_PATTERN)]
ActionId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ACTION_ID_PATTERN)]
