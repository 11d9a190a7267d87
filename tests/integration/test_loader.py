"""Loading an app's workflows: per-file errors with lines, duplicates refused, others still load."""

from __future__ import annotations

import pytest

import tako
from tests.conftest import App, running

GOOD = """
    from tako import workflow

    @workflow
    async def good_one(payload, step):
        return "ok"
"""


@pytest.fixture
def runtime() -> str:
    return "asyncio"  # loading does not depend on the event loop


async def test_broken_files_are_reported_and_the_rest_still_works(app: App) -> None:
    app.write("good.py", GOOD)
    app.write("syntax.py", "def broken(:\n    pass\n")
    app.write("imports.py", "import no_such_module_here\n")
    app.write("raises.py", "x = 1\nraise RuntimeError('config missing')\n")
    app.write(
        "sync_handler.py",
        """
        from tako import workflow

        @workflow
        def not_async(payload, step):
            return 1
        """,
    )
    app.write(
        "zz_duplicate.py",
        """
        from tako import workflow

        @workflow("good-one")
        async def again(payload, step):
            return "second"
        """,
    )
    async with running(app):
        client = app.client()
        registry = await client.workflows()
        assert [w.name for w in registry.workflows] == ["good-one"]
        assert registry.workflows[0].file == "workflows/good.py"
        errors = {e.file: e for e in registry.errors}
        assert set(errors) == {
            "workflows/syntax.py",
            "workflows/imports.py",
            "workflows/raises.py",
            "workflows/sync_handler.py",
            "workflows/zz_duplicate.py",
        }
        assert errors["workflows/syntax.py"].line == 1
        assert errors["workflows/syntax.py"].message.startswith("SyntaxError")
        assert "no_such_module_here" in errors["workflows/imports.py"].message
        assert (errors["workflows/raises.py"].line, errors["workflows/raises.py"].message) == (
            2,
            "RuntimeError: config missing",
        )
        assert "must be `async def handler(payload, step)`" in (
            errors["workflows/sync_handler.py"].message
        )
        assert "duplicate workflow name 'good-one'" in errors["workflows/zz_duplicate.py"].message
        assert "workflows/good.py" in errors["workflows/zz_duplicate.py"].message
        assert await client.result(await client.start("good-one"), timeout=15) == "ok"
        with pytest.raises(tako.UnknownWorkflow, match="known: good-one"):
            await client.start("not-async")
