"""Loading an app's workflows: per-file errors with lines, duplicates refused, others still load."""

from __future__ import annotations

import textwrap

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


async def test_a_helper_imported_as_workflows_dot_name_runs_once_per_process(app: App) -> None:
    count_me = (  # one `module:pid` word per execution of a module
        "import os\nwith open(EFFECTS, 'a') as f:\n    f.write(f'{__name__}:{os.getpid()} ')\n"
    )
    app.write("__init__.py", count_me)
    app.write("common.py", count_me + "LOADS = [1]\n_A_HELPER = True\n")
    (app.dir / "workflows" / "billing").mkdir()
    app.write("billing/tax.py", count_me + "RATE = 0.2\n")
    uses = """
        import sys

        from tako import workflow

        @workflow
        async def NAME(payload, step):
            common = sys.modules["workflows.common"]
            copies = [m for m in list(sys.modules.values()) if "_A_HELPER" in vars(m)]
            return [len(copies), LOADS is common.LOADS, RATE]
    """
    app.write(
        "a.py",
        "from workflows.common import LOADS\nfrom workflows.billing.tax import RATE\n"
        + textwrap.dedent(uses.replace("NAME", "a")),
    )
    app.write(
        "b.py",
        "from workflows import common\nfrom workflows.billing import tax\n"
        "LOADS, RATE = common.LOADS, tax.RATE\n" + textwrap.dedent(uses.replace("NAME", "b")),
    )
    async with running(app):
        client = app.client()
        registry = await client.workflows()
        assert (sorted(w.name for w in registry.workflows), registry.errors) == (["a", "b"], [])
        for name in ("a", "b"):
            assert await client.result(await client.start(name), timeout=15) == [1, True, 0.2]
    # each process that loaded the app (the describe and the workers) ran each file once
    loads = app.log.read_text().split()
    assert len(loads) == len(set(loads)), loads
    assert {load.split(":")[0] for load in loads} == {
        "workflows",
        "workflows.common",
        "workflows.billing.tax",
    }


async def test_starting_a_workflow_of_a_broken_file_names_the_file_and_its_error(
    app: App,
) -> None:
    app.write("good.py", GOOD)
    app.write("broken.py", "from tako import workflow\n\nundefined_name\n")
    async with running(app):
        with pytest.raises(tako.UnknownWorkflow) as info:
            await app.client().start("broken")
    assert str(info.value) == (
        "no workflow named 'broken' (known: good-one); workflows/broken.py failed to load: "
        "line 3: NameError: name 'undefined_name' is not defined"
    )


async def test_a_file_that_ends_the_process_while_imported_is_reported(app: App) -> None:
    app.write("good.py", GOOD)
    app.write("quits.py", "import os\nos._exit(0)\n")
    async with running(app) as supervisor:
        [error] = supervisor.registry.errors
    assert error.message == (
        "the worker failed to load the app: exit code 0 (a workflow file exited while imported?)"
    )
