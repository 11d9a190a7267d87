"""Fixtures of the `tako` command's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import short_data_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir under /tmp: unix socket paths are limited to 107 bytes."""
    path = short_data_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
