"""Fixtures of these tests: `trained_project` (tiny projects trained for real)."""

from trained_fixture import trained_project  # noqa: F401
