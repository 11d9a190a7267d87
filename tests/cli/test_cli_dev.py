"""`tako dev` as a real process: stopping cleanly, hot reload, refusing bad setups."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

import pytest
from cli_harness import DevServer, eventually, make_app, tako_cmd, worker_pids

BUSY = """
    import time

    import anyio
    from tako import Step, workflow

    async def nap():
        await anyio.sleep(60)

    @workflow(retries=0)
    async def busy(payload, step: Step):
        await step.run("nap", nap)

    def block(mark):
        open(mark, "w").close()  # tell the test the step is under way
        time.sleep(60)  # in a thread no one can cancel

    @workflow(retries=0)
    async def stuck(payload, step: Step):
        await step.run("block", lambda: block(payload["mark"]))
"""

GREET = """
    from tako import Step, workflow

    @workflow(retries=0)
    async def greet(payload, step: Step):
        return await step.run("say", lambda: "VERSION")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_with_exit_0_and_no_worker_left(
    tmp_path: Path, data_dir: Path, sig: signal.Signals
) -> None:
    app = make_app(tmp_path / "busyapp", {"busy.py": BUSY})
    server = DevServer(app, data_dir)
    try:
        run_id = server.client().start("busy")
        server.wait_status(run_id, "running")
        assert worker_pids(app), "a worker should be running the step"
        assert server.stop(sig) == 0, server.log()
        assert worker_pids(app) == []  # reaped before `tako dev` exited
        assert f"{sig.name}: stopping" in server.log()
        assert server.log().rstrip().endswith("stopped")
    finally:
        server.kill()


def test_a_step_stuck_past_the_shutdown_grace_does_not_hold_up_the_stop(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "stuckapp", {"busy.py": BUSY})  # shutdown_grace = "2s"
    server = DevServer(app, data_dir)
    try:
        mark = tmp_path / "step-started"
        server.client().start("stuck", {"mark": str(mark)})
        server.wait_for(mark.exists, what="the step to start")
        began = time.monotonic()
        assert server.stop() == 0, server.log()
        assert 1.5 < time.monotonic() - began < 15  # the step had its grace, then no more
        assert worker_pids(app) == []
        assert "1 run(s) still in a step after 2 s" in server.log()
    finally:
        server.kill()


def test_editing_a_workflow_reloads_and_the_next_run_uses_the_new_code(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "greetapp", {"greet.py": GREET.replace("VERSION", "v1")})
    server = DevServer(app, data_dir, from_app_dir=True)  # `tako dev` with no APP_DIR: here
    try:
        assert f"app dir   {app}" in server.log()
        assert server.tako("run", "greet", "--wait").json() == "v1"
        # a longer file: its new size is noticed even where the mtime has not moved yet
        (app / "workflows" / "greet.py").write_text(
            textwrap.dedent(GREET.replace("VERSION", "v2-longer"))
            + "\n@workflow\nasync def added(p, step):\n    return 'new'\n"
        )
        server.wait_for_log("greet.py changed: reloaded")
        assert server.tako("run", "greet", "--wait").json() == "v2-longer"
        assert server.tako("run", "added", "--wait").json() == "new"
        (app / "workflows" / "broken.py").write_text("x = (\n")
        server.wait_for_log("broken.py changed: reloaded")
        server.wait_for_log("workflows/broken.py:1")
        assert server.stop() == 0
    finally:
        server.kill()


def test_a_bad_tako_toml_exits_2_naming_the_setting(tmp_path: Path, data_dir: Path) -> None:
    app = make_app(tmp_path / "badapp", {"greet.py": GREET})
    (app / "tako.toml").write_text('[workers]\nidle_timeout = "soon"\n')
    result = tako_cmd("dev", app, "--data-dir", data_dir, timeout=20)
    assert result.code == 2
    assert "tako.toml" in result.err and "idle_timeout" in result.err


def test_a_socket_path_over_the_os_limit_exits_2(tmp_path: Path, data_dir: Path) -> None:
    app = make_app(tmp_path / "longapp", {"greet.py": GREET})
    deep = data_dir / ("d" * 110)
    result = tako_cmd("dev", app, "--data-dir", deep, timeout=20)
    assert result.code == 2
    assert "107" in result.err


def test_without_a_supervisor_commands_exit_3_naming_the_socket(
    tmp_path: Path, data_dir: Path
) -> None:
    for args in (["run", "greet", "{}"], ["signal", "ev"], ["runs"], ["runs", "cancel", "r1"]):
        result = tako_cmd(*args, "--data-dir", data_dir, cwd=tmp_path)
        assert result.code == 3, (args, result)
        assert str(data_dir / "tako.sock") in result.err and "tako dev" in result.err
    status = tako_cmd("status", "--json", "--data-dir", data_dir, cwd=tmp_path)
    assert status.code == 3
    assert status.json() == {
        "supervisor": "down",
        "pid": None,
        "workers": 0,
        "runs": {},
        "next_wake_at": None,
    }


def test_a_kept_socket_file_of_a_dead_supervisor_still_means_down(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "deadapp", {"greet.py": GREET})
    server = DevServer(app, data_dir)
    server.proc.kill()  # no cleanup: the socket file stays behind
    server.kill()
    eventually(lambda: worker_pids(app) == [], what="workers to notice")
    result = tako_cmd("run", "greet", "--data-dir", data_dir)
    assert result.code == 3 and "tako dev" in result.err


def test_cancelling_a_parked_run_prints_a_line(tmp_path: Path, data_dir: Path) -> None:
    parked = """
        from tako import Step, workflow

        @workflow
        async def parked(payload, step: Step):
            await step.wait_for("never")
    """
    app = make_app(tmp_path / "parkapp", {"parked.py": parked})
    server = DevServer(app, data_dir)
    try:
        run_id = server.client().start("parked")
        server.wait_status(run_id, "waiting")
        server.client().cancel(run_id, reason="changed my mind")
        server.wait_for_log(f"{run_id} parked  ⊘ cancelled: changed my mind")
        assert server.stop() == 0
    finally:
        server.kill()


def test_dev_help_names_the_defaults_it_uses() -> None:
    text = " ".join(tako_cmd("dev", "--help").out.split())  # as one line, however wrapped
    assert "APP_DIR/.tako" in text and "DATA_DIR/tako.sock" in text
    assert "$TAKO_SOCKET" not in text and "./.tako" not in text  # a supervisor does not look
    client_help = " ".join(tako_cmd("runs", "--help").out.split())
    assert "$TAKO_SOCKET" in client_help and "nearest folder above" in client_help
