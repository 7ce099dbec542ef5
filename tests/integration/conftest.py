"""The integration tests run on the session's real stack (tests/stack.py, registered in tests/conftest.py)."""

from tests.stack import Stack, wait_until_quiet

__all__ = ["Stack", "wait_until_quiet"]
