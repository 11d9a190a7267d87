"""The README's walkthrough, command by command, through the real `tako` executable.

Each test copies `workflows_example/` to a temp folder, starts `tako dev` on it
in the background (with a short data dir: unix socket paths are limited to
107 bytes), then runs the README's commands as a user types them in a second
terminal: from the app folder, with `TAKO_DATA_DIR` pointing at that data dir.
Every command a test types is checked to appear verbatim in README.md, so the
README cannot drift from what is tested.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import worker_pids

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent  # the venv's bin/, where pip put the `tako` script
TAKO = str(BIN / "tako") if (BIN / "tako").exists() else shutil.which("tako") or "tako"
COMMAND_TIMEOUT = 60


def eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Terminal:
    """The README's second terminal: the app folder as working directory, one data dir."""

    def __init__(self, app: Path, data_dir: Path) -> None:
        self.app = app
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TAKO_")}
        self.env["TAKO_DATA_DIR"] = str(data_dir)

    def run(
        self,
        command: str,
        *,
        exit_code: int = 0,
        json_output: bool = False,
        in_readme: bool = True,
        **placeholders: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run one README command; `<name>` placeholders are filled from `placeholders`."""
        if in_readme:
            assert command in README, f"the README does not show `{command}`"
        for name, value in placeholders.items():
            command = command.replace(f"<{name}>", value)
        argv = shlex.split(command) + (["--json"] if json_output else [])
        argv[0] = {"tako": TAKO, "python": sys.executable}.get(argv[0], argv[0])
        done = subprocess.run(
            argv,
            cwd=self.app,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        assert done.returncode == exit_code, (
            f"`{command}` exited {done.returncode}, expected {exit_code}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done

    def json(self, command: str, **kwargs: Any) -> Any:
        return json.loads(self.run(command, json_output=True, **kwargs).stdout)

    def run_status(self, run_id: str) -> str:
        return str(self.json("tako runs show <run_id>", run_id=run_id)["status"])

    def wait_for_status(self, run_id: str, *statuses: str) -> dict[str, Any]:
        """Poll `tako runs show --json` until the run has one of `statuses`; return it."""

        def check() -> dict[str, Any] | None:
            run: dict[str, Any] = self.json("tako runs show <run_id>", run_id=run_id)
            return run if run["status"] in statuses else None

        return eventually(check, what=f"run {run_id} to be {' or '.join(statuses)}")


class Dev:
    """`tako dev` running in the background, as in the README's first terminal."""

    def __init__(self, app: Path, data_dir: Path, log: Path) -> None:
        self.app = app
        self.data_dir = data_dir
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAKO_")}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [TAKO, "dev", str(app), "--data-dir", str(data_dir)],
                cwd=app.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        eventually(self._accepting, what=f"tako dev to listen on {data_dir / 'tako.sock'}")

    def _accepting(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"tako dev exited {self.proc.returncode}:\n{self.output()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(self.data_dir / "tako.sock"))
            except OSError:
                return False
        return True

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a service manager would; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"tako dev did not stop on SIGTERM:\n{self.output()}") from None


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the example app, so the repository's folder is never written."""
    target = tmp_path / "workflows_example"
    shutil.copytree(
        REPO / "workflows_example", target, ignore=shutil.ignore_patterns(".tako", "__pycache__")
    )
    return target


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dev(app: Path, data_dir: Path, tmp_path: Path) -> Iterator[Dev]:
    server = Dev(app, data_dir, tmp_path / "tako-dev.log")
    try:
        yield server
    finally:
        server.stop()
        print(server.output())  # shown by pytest when the test failed


@pytest.fixture
def term(app: Path, data_dir: Path, dev: Dev) -> Terminal:
    return Terminal(app, data_dir)


def test_the_readme_walkthrough(app: Path, dev: Dev, term: Terminal) -> None:
    names = [w["name"] for w in term.json("tako workflows")["workflows"]]
    assert names == [
        "approve-and-act",
        "expense-approval",
        "fulfill-batch",
        "fulfill-order",
        "monthly-report",
        "refund",
        "rolling-deploy",
        "send-email",
    ]

    # Start an order above the approval threshold.
    started = term.json("""tako run fulfill-order '{"order_id": 42}'""")
    assert started["status"] == "pending"
    assert started["deduplicated"] is False
    run_id = started["run_id"]

    # Watch it park.
    run = term.wait_for_status(run_id, "waiting")
    assert run["waiting_for"] == "approval:order-42"
    assert [(s["key"], s["status"]) for s in run["steps"]] == [
        ("load-order", "completed"),
        ("charge", "completed"),
        ("approval:order-42", "waiting"),
    ]
    listed = term.json("tako runs")
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "waiting")]
    assert "approval:order-42" in term.run("tako runs show <run_id>", run_id=run_id).stdout

    # Scale to zero: once idle_timeout (3 s) passes, takod is the only process left.
    eventually(
        lambda: term.json("tako status")["workers"] == 0 and not worker_pids(app),
        timeout=20,
        what="the idle worker to exit",
    )

    # Approve it.
    sent = term.json("""tako signal approval:order-42 '{"approved": true, "by": "alice"}'""")
    assert sent == {"delivered": 1, "kept": False}

    # Inspect it.
    run = term.wait_for_status(run_id, "completed", "failed", "cancelled")
    assert run["status"] == "completed"
    assert run["result"] == {"shipped": 42}
    assert [s["key"] for s in run["steps"]] == [
        "load-order",
        "charge",
        "approval:order-42",
        "ship",
        "notify",
    ]
    assert run["steps"][2]["result"] == {"approved": True, "by": "alice"}
    assert "completed" in term.run("tako runs show <run_id>", run_id=run_id).stdout
    status = term.json("tako status")
    assert status["supervisor"] == "running"
    assert status["runs"] == {"completed": 1}

    # The side effects: exactly one charge, one shipment, one notification.
    outbox = app / ".tako" / "outbox"
    ledger = term.run("cat .tako/outbox/charges.jsonl").stdout
    charges = [json.loads(line) for line in ledger.splitlines()]
    assert [(c["order"], c["idempotency_key"]) for c in charges] == [(42, f"{run_id}:order-42")]
    assert run["steps"][1]["result"] == charges[0]["charge_id"]
    assert len((outbox / "shipments.jsonl").read_text().splitlines()) == 1
    assert "order 42 shipped" in (outbox / "notifications.txt").read_text()

    # Ctrl-C / SIGTERM stops tako dev cleanly, its workers gone.
    assert dev.stop() == 0, dev.output()
    assert worker_pids(app) == []
    # Read commands still work from the database; status says the supervisor is down.
    assert term.json("tako status", exit_code=3)["supervisor"] == "down"
    assert term.json("tako runs")[0]["status"] == "completed"


def test_admin_approve_script_rejects_and_approves(app: Path, term: Terminal) -> None:
    # typed back to back: --until-parked returns once the run waits for the decision
    parked = term.json("""tako run fulfill-order '{"order_id": 42}' --until-parked""")
    assert (parked["status"], parked["waiting_for"]) == ("waiting", "approval:order-42")
    rejected = parked["run_id"]
    done = term.run("python admin_approve.py 42 --by bob --reject")
    assert done.stdout.strip() == "SignalResult(delivered=1, kept=False)"
    run = term.wait_for_status(rejected, "completed", "failed", "cancelled")
    assert (run["status"], run["error"]) == ("cancelled", "rejected by bob")
    keys = [s["key"] for s in run["steps"]]
    assert keys == ["load-order", "charge", "approval:order-42", "refund"]
    refunds = (app / ".tako" / "outbox" / "refunds.jsonl").read_text().splitlines()
    assert [json.loads(line)["charge_id"] for line in refunds] == [run["steps"][1]["result"]]

    # A signal sent before anyone waits is kept, and the next run waiting on it takes it.
    early = term.run("python admin_approve.py 42 --by alice")
    assert early.stdout.strip() == "SignalResult(delivered=0, kept=True)"
    approved = term.json("""tako run fulfill-order '{"order_id": 42}'""")["run_id"]
    run = term.wait_for_status(approved, "completed", "failed", "cancelled")
    assert (run["status"], run["result"]) == ("completed", {"shipped": 42})


def test_small_orders_ship_without_approval_and_unknown_orders_fail(term: Terminal) -> None:
    small = term.json("""tako run fulfill-order '{"order_id": 41}' --wait""", in_readme=False)
    assert (small["status"], small["result"]) == ("completed", {"shipped": 41})
    assert "approval:order-41" not in [s["key"] for s in small["steps"]]

    unknown = term.json(
        """tako run fulfill-order '{"order_id": 99}' --wait""", exit_code=1, in_readme=False
    )
    assert (unknown["status"], unknown["attempts"]) == ("failed", 1)
    assert unknown["error"] == "no order 99 in orders.json"


def test_approve_and_act_is_approved_by_a_run_targeted_signal(app: Path, term: Terminal) -> None:
    command = (
        """tako run approve-and-act '{"action": "rotate the staging database password"}' """
        "--until-parked"
    )
    said = term.run(command).stdout  # as a person reads it, then straight on to `cat`
    run_id = said.split()[1]
    assert said.startswith(f'run {run_id} (approve-and-act) waiting for "decision"\n'), said
    assert term.run("cat .tako/outbox/slack.txt").stdout == (
        "#ops: Approve “rotate the staging database password”? To approve, run: "
        f"""tako signal decision '{{"kind": "approved"}}' --run {run_id}\n"""
    )

    # takod checks the payload against the Decision type the run waits for.
    refused = term.run(
        """tako signal decision '{"kind": "maybe"}' --run <run_id>""", exit_code=1, run_id=run_id
    )
    assert "Expected one of 'approved', 'rejected'" in refused.stderr
    assert term.run_status(run_id) == "waiting"

    sent = term.json(
        """tako signal decision '{"kind": "approved"}' --run <run_id>""", run_id=run_id
    )
    assert sent == {"delivered": 1, "kept": False}
    run = term.wait_for_status(run_id, "completed", "failed", "cancelled")
    ticket = f"OPS-{run_id[-6:]}"
    assert run["result"] == {"done": True, "follow_up": ticket}
    assert run["steps"][1]["result"] == {"kind": "approved"}  # the signal as sent
    follow_up = app / ".tako" / "outbox" / "follow-ups" / f"{ticket}.txt"
    assert "rotate the staging database password" in follow_up.read_text()


def test_approve_and_act_returns_the_reason_of_a_rejection(term: Terminal) -> None:
    run_id = term.json("tako run approve-and-act", in_readme=False)["run_id"]
    term.wait_for_status(run_id, "waiting")
    term.run(
        """tako signal decision '{"kind": "rejected", "reason": "not during the freeze"}' """
        "--run <run_id>",
        in_readme=False,
        run_id=run_id,
    )
    run = term.wait_for_status(run_id, "completed", "failed", "cancelled")
    assert run["result"] == {"done": False, "reason": "not during the freeze"}


def test_rolling_deploy_completes_and_stops_at_the_first_unhealthy_environment(
    app: Path, term: Terminal
) -> None:
    run = term.json("""tako run rolling-deploy '{"cool_down": "200ms"}' --wait""", in_readme=False)
    assert run["status"] == "completed"
    assert run["result"] == {"deployed": ["staging", "canary", "prod"], "version": "v2"}
    assert [s["key"] for s in run["steps"]] == [
        "deploy staging",
        "cool-down",
        "health staging",
        "deploy canary",
        "cool-down#2",
        "health canary",
        "deploy prod",
        "cool-down#3",
        "health prod",
    ]

    failed = term.json(
        """tako run rolling-deploy '{"unhealthy": ["canary"]}' --wait""", exit_code=1
    )
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1  # NonRetryable: not retried
    assert failed["error"] == "canary is unhealthy after deploying v2; stopped there"
    assert [s["key"] for s in failed["steps"]][-1] == "health canary"
    deploys = (app / ".tako" / "outbox" / "deploys.jsonl").read_text().splitlines()
    by_run = [json.loads(line)["env"] for line in deploys if failed["run_id"] in line]
    assert by_run == ["staging", "canary"]  # prod untouched


def test_rolling_deploy_sleeps_with_no_worker_held(app: Path, term: Terminal) -> None:
    run_id = term.json("""tako run rolling-deploy '{"cool_down": "10s"}'""")["run_id"]
    term.wait_for_status(run_id, "sleeping")
    eventually(
        lambda: term.json("tako status")["workers"] == 0 and not worker_pids(app),
        timeout=20,
        what="the worker to exit while the run sleeps",
    )
    assert term.run_status(run_id) == "sleeping"
    term.json("tako runs cancel <run_id>", run_id=run_id)
    assert term.run_status(run_id) == "cancelled"


def test_approve_a_refund_from_its_link_as_a_browser_would(
    app: Path, dev: Dev, term: Terminal
) -> None:
    import re

    import httpx

    banner = eventually(lambda: re.search(r"^\s*http\s+(http://\S+)", dev.output(), re.M))
    base = banner.group(1)
    said = term.run(
        """tako run refund '{"order_id": 42, "amount": 50000, "reason": "arrived broken"}' """
        "--until-parked"
    ).stdout
    run_id = said.split()[1]
    assert 'waiting for "approval:' in said, said
    shown = term.run("tako approvals show <run_id>:approve-refund --links", run_id=run_id).stdout
    approve = re.search(r"^  approve\s+(\S+)$", shown, re.M)
    assert approve and approve.group(1).startswith(f"{base}/a/"), shown
    # the shop's "Slack" posts the same links (delivered by a notifier, so soon after)
    slack = app / ".tako" / "outbox" / "slack-approvals.txt"
    eventually(lambda: slack.exists() and approve.group(1) in slack.read_text(), what="slack")

    with httpx.Client(timeout=30) as browser:
        page = browser.get(approve.group(1))  # opening it decides nothing
        assert page.status_code == 200 and "Approve" in page.text
        assert term.run_status(run_id) == "waiting"
        hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        view = approve.group(1).split("?")[0]
        clicked = browser.post(view, data={**hidden, "action": "approve"}, follow_redirects=True)
        assert "approved by support-lead" in clicked.text
    run = term.wait_for_status(run_id, "completed", "failed", "cancelled")
    assert run["result"]["refunded"] == 50000
