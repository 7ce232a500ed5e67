"""Fixtures the cross-app tests share: a real browser page, a project with a deployed model."""

from inference.tests.conftest import deployed  # noqa: F401
from tests.browser import browser_page  # noqa: F401
