"""Local account passwords, hashed with Werkzeug's scrypt (slow on purpose)."""

from werkzeug.security import check_password_hash, generate_password_hash

# Checked against when the username is unknown, so a login takes as long either way.
_DUMMY_HASH = generate_password_hash("timing-equaliser")


def hash_password(password: str) -> str:
    """Hash a password for storing."""
    return generate_password_hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; a missing hash still costs a full hash check."""
    return check_password_hash(password_hash or _DUMMY_HASH, password) and password_hash is not None
