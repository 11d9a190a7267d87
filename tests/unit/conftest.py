"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from takod.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store on a real SQLite file of its own."""
    s = Store(tmp_path / "apps" / "shop" / "runs.db")
    yield s
    s.close()
