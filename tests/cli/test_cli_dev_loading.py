"""`tako dev` loading a user's app: what its files print, where it is run from, what it
suggests typing next."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

from cli_harness import DevServer, make_app, tako_cmd

NOISY = """
    import os

    from tako import Step, workflow

    print("noisy: loading VERSION")
    os.write(1, b"noisy: straight to fd 1\\n")

    @workflow(retries=0)
    async def noisy(payload, step: Step):
        print("noisy: in the handler")
        return await step.run("say", lambda: "VERSION")
"""

TYPED = """
    import datetime

    import msgspec
    from tako import Step, workflow

    class Order(msgspec.Struct):
        order_id: str
        quantity: int
        placed_at: datetime.datetime
        note: str | None = None

    @workflow(retries=0)
    async def order(payload: Order, step: Step):
        return await step.run("take", lambda: payload.order_id)
"""


def test_what_a_file_prints_at_import_is_shown_labelled_at_start_and_on_reload(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "noisyapp", {"noisy.py": NOISY.replace("VERSION", "v1")})
    server = DevServer(app, data_dir)
    try:
        server.wait_for_log("workflows/noisy.py │ noisy: loading v1")
        assert "workflows/noisy.py │ noisy: straight to fd 1" in server.log()
        assert "noisy" in server.log().split("next, in another terminal:")[0]  # it loaded
        # a worker imports the file too: its print reaches the terminal, not the protocol
        assert server.tako("run", "noisy", "--wait").json() == "v1"
        at_import = ("noisy: loading", "noisy: straight")  # the handler's own print is not
        unlabelled = [line for line in server.log().splitlines() if line.startswith(at_import)]
        assert unlabelled == [], unlabelled  # a worker labels what the file printed, too
        assert server.log().count("workflows/noisy.py │ noisy: loading v1") >= 2
        (app / "workflows" / "noisy.py").write_text(
            textwrap.dedent(NOISY.replace("VERSION", "v2-longer"))
        )
        server.wait_for_log("noisy.py changed: reloaded")
        assert "reload failed" not in server.log()
        assert "workflows/noisy.py │ noisy: loading v2-longer" in server.log()
        assert server.tako("run", "noisy", "--wait").json() == "v2-longer"
        assert server.stop() == 0
    finally:
        server.kill()


def test_a_tako_or_worker_runtime_folder_where_it_runs_shadows_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    here = tmp_path / "src"
    (here / "tako").mkdir(parents=True)  # a clone of tako, say: no __init__.py at its top
    (here / "worker_runtime").mkdir()
    (here / "worker_runtime" / "__init__.py").write_text("raise ImportError('not this one')\n")
    (here / "workflows").mkdir()  # and not the app's workflows either
    (here / "workflows" / "__init__.py").write_text("raise ImportError('not this one')\n")
    app = make_app(here / "hello", {"noisy.py": NOISY.replace("VERSION", "v1")})
    server = DevServer(app, data_dir, cwd=here)
    try:
        assert "failed to load" not in server.log()
        run_id = server.client().start("noisy")
        assert server.wait_status(run_id, "completed")["result"] == "v1"
        assert server.tako("workflows", "--json", cwd=here).json()["workflows"][0]["name"] == (
            "noisy"
        )
        assert server.stop() == 0
    finally:
        server.kill()


def test_the_suggested_run_command_fits_the_payload_type(tmp_path: Path, data_dir: Path) -> None:
    app = make_app(tmp_path / "typedapp", {"order.py": TYPED})
    server = DevServer(app, data_dir)
    try:
        hint = re.search(r"^  (tako run order .*)$", server.log(), re.M)
        assert hint is not None, server.log()
        args = shlex.split(hint.group(1))[1:]
        assert server.tako(*args, "--wait").json() == "..."
        assert server.stop() == 0
    finally:
        server.kill()


def test_tako_workflows_without_a_supervisor_lists_an_app_whose_file_prints(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "quietapp", {"noisy.py": NOISY.replace("VERSION", "v1")})
    result = tako_cmd("workflows", "--json", "--data-dir", data_dir, cwd=app)
    assert result.code == 0, result
    assert [w["name"] for w in result.json()["workflows"]] == ["noisy"]
