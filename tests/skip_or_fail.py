"""What a test does when something it needs is missing: fail when ``CI=true`` (CI installs everything), skip
elsewhere."""

from __future__ import annotations

import os

import pytest


def skip_or_fail(missing: str | None) -> None:
    """Nothing when ``missing`` is None; else fail under ``CI=true``, skip otherwise, with ``missing`` as the reason."""
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
