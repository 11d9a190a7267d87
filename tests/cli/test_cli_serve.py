"""`tako serve` as a real process: JSON log lines, refusing a broken file, SIGHUP, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from cli_harness import (
    TAKO,
    DevServer,
    clean_env,
    eventually,
    make_app,
    tako_cmd,
    worker_pids,
)

GREET = """
    import logging
    import time

    from tako import Step, workflow

    @workflow(retries=0)
    async def greet(payload, step: Step):
        step.log.warning("greeting %s", payload["who"])
        return await step.run("say", lambda: "VERSION " + payload["who"])

    def slow(mark):
        open(mark, "w").close()  # tell the test the step is under way
        time.sleep(1)
        return "slept"

    @workflow(retries=0)
    async def nap(payload, step: Step):
        return await step.run("nap", lambda: slow(payload["mark"]))
"""


def lines(server: DevServer) -> list[dict[str, Any]]:
    """Every line the server wrote, each parsed as JSON (it fails on any other line)."""
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def events(server: DevServer, kind: str) -> list[dict[str, Any]]:
    return [line for line in lines(server) if line.get("event") == kind]


def test_every_log_line_is_a_json_object_with_the_run_events(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "app", {"greet.py": GREET.replace("VERSION", "v1")})
    server = DevServer(app, data_dir, command="serve")
    try:
        serving = events(server, "serving")[0]
        assert serving["app"] == "shop" and serving["broken"] == []
        assert sorted(serving["workflows"]) == ["greet", "nap"]
        run_id = server.client().start("greet", {"who": "ada"})
        assert server.client().result(run_id, timeout=20) == "v1 ada"
        server.wait_for(lambda: events(server, "completed"), what="the completed event")
        assert [e["run_id"] for e in events(server, "started")] == [run_id]
        assert {e["key"] for e in events(server, "step")} == {"say"}
        warned = [line for line in lines(server) if line.get("message") == "greeting ada"]
        assert warned and warned[0]["run_id"] == run_id and warned[0]["level"] == "warning"
        assert server.stop() == 0
        assert lines(server)[-1]["message"] == "stopped"  # still JSON, to the last line
    finally:
        server.kill()


def test_a_broken_file_stops_it_from_starting_unless_allowed(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "app", {"greet.py": GREET, "bad.py": "import nowhere_to_be_found\n"})
    proc = subprocess.run(
        [TAKO, "serve", str(app), "--data-dir", str(data_dir), "--no-http"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert proc.returncode == 1, proc
    assert "bad.py" in proc.stderr and "nowhere_to_be_found" in proc.stderr
    assert "--allow-broken" in proc.stderr
    assert not (data_dir / "tako.sock").exists()
    server = DevServer(app, data_dir, command="serve", args=("--no-http", "--allow-broken"))
    try:
        broken = events(server, "serving")[0]["broken"]
        assert len(broken) == 1 and "bad.py" in broken[0]
        run_id = server.client().start("greet", {"who": "bo"})
        assert server.client().result(run_id, timeout=20) == "VERSION bo"
    finally:
        server.kill()


def test_sighup_reloads_the_workflows(tmp_path: Path, data_dir: Path) -> None:
    app = make_app(tmp_path / "app", {"greet.py": GREET.replace("VERSION", "v1")})
    server = DevServer(app, data_dir, command="serve")
    try:
        client = server.client()
        assert client.result(client.start("greet", {"who": "a"}), timeout=20) == "v1 a"
        (app / "workflows" / "greet.py").write_text(textwrap.dedent(GREET.replace("VERSION", "v2")))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(lambda: events(server, "reloaded"), what="the reload")
        assert client.result(client.start("greet", {"who": "b"}), timeout=20) == "v2 b"
        assert server.proc.poll() is None  # SIGHUP reloads; it does not stop
    finally:
        server.kill()


def test_sigterm_lets_the_step_in_flight_finish_and_be_recorded(
    tmp_path: Path, data_dir: Path
) -> None:
    app = make_app(tmp_path / "app", {"greet.py": GREET})
    server = DevServer(app, data_dir, command="serve")
    try:
        mark = tmp_path / "step-started"
        run_id = server.client().start("nap", {"mark": str(mark)})
        eventually(mark.exists, what="the step to start")
        assert server.stop(signal.SIGTERM) == 0, server.log()
        released = [e for e in events(server, "released") if e["run_id"] == run_id]
        assert [e["key"] for e in released] == ["nap"]  # drained: it finished, then let go
        assert worker_pids(app) == []
        shown = tako_cmd("runs", "show", run_id, "--json", "--data-dir", data_dir, "--app", "shop")
        run = json.loads(shown.out)  # read from the database, the supervisor gone
        assert run["status"] == "pending"  # it resumes at the next start...
        assert [(s["key"], s["status"], s["result"]) for s in run["steps"]] == [
            ("nap", "completed", "slept")  # ...with the step it finished kept
        ]
    finally:
        server.kill()
