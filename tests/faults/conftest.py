"""Fixtures for the fault tests: one private stack for the whole package, reset before each test."""

import pytest

from tests.support import bearer

from .stack import Stack

USERS = [f"f{i}" for i in range(8)]  # fewer than 10: every user is on the board, so it shows every claim


@pytest.fixture
def clean():
    """The fault tests keep their data on their own servers; the shared test database is left alone."""
    yield


@pytest.fixture(scope="package")
def fault_stack(stack_env, tmp_path_factory):
    """The private stack, started once for the package and stopped (servers deleted) at its end."""
    stack = Stack(stack_env, tmp_path_factory.mktemp("faults"))
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


@pytest.fixture
def stack(fault_stack):
    """The private stack with empty tables and Redis, every part running."""
    fault_stack.reset()
    return fault_stack


@pytest.fixture(scope="package")
def tokens(mint):
    """Access tokens for the test users (the stack shares the tests' JWT secret)."""
    return {user: mint(user) for user in USERS}


@pytest.fixture(scope="package")
def reader(mint):
    """A token for reading the board."""
    return mint("board-reader")


__all__ = ["USERS", "bearer"]
