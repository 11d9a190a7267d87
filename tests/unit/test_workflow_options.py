"""`@workflow`'s flow-control options are checked where they are written: a bad one
fails the file's load with a message naming it, never a workflow that misbehaves."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tako import workflow
from tako.takod.catalog import describe


async def handler(payload: Any, step: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nightly report", {"schedule": "0 2 * * *"}, "its name is part of its runs' ids"),
        ("nightly", {"schedule": "0 25 * * *"}, "is not a valid cron expression"),
        ("nightly", {"schedule": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ("nightly", {"schedule": "0 2 * * *", "catch_up": "some"}, "catch_up must be one of"),
        ("charge", {"key": lambda p: p}, "key= and key_concurrency= go together"),
        ("charge", {"key": lambda p: p, "key_concurrency": 0}, "key_concurrency must be"),
        ("sync", {"concurrency": 0}, "concurrency must be an integer >= 1"),
    ],
)
def test_a_bad_option_is_refused_naming_it(
    name: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        workflow(name, **options)(handler)


def test_good_options_are_kept() -> None:
    marked = workflow(
        "nightly", schedule="30 2 * * *", timezone="Europe/Paris", catch_up="all",
        concurrency=2, key=lambda p: p["customer"], key_concurrency=1,
    )(handler)  # fmt: skip
    assert marked is handler


async def test_a_file_with_a_bad_schedule_fails_to_load_saying_why(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "bad.py").write_text(
        textwrap.dedent(
            """
            from tako import workflow

            @workflow("weekly report", schedule="0 9 * * MON")
            async def weekly(payload, step):
                return None
            """
        )
    )
    registry = await describe(tmp_path)
    assert registry.workflows == []
    (error,) = registry.errors
    assert error.file == "workflows/bad.py"
    assert "scheduled workflow 'weekly report'" in error.message
