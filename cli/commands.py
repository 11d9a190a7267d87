"""The client commands: run, signal, runs (list, show, cancel, retry, prune), status, workflows.

Each is thin: parse, call the supervisor, print. Runs are read in takod's
own form (`RunView`: raw JSON values, ISO 8601 text), so `--json` prints
them as the supervisor sent them. Read commands fall back to the database, read-only,
when the supervisor is down (`cli/offline.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click
import msgspec

from tako import Client, SupervisorUnavailable, TakoError
from tako._paths import find_app_dir
from tako._protocol import (
    Cancel,
    GetApproval,
    GetRun,
    ListRuns,
    Prune,
    Retry,
    Status,
    Wait,
    Workflows,
)
from tako._records import STATUSES, ApprovalView, RunStatus, RunView, iso
from tako._replies import (
    ApprovalReply,
    PrunedReply,
    RunReply,
    RunsReply,
    StatusReply,
    WaitReply,
    WorkflowsReply,
)
from tako.cli import offline
from tako.cli.options import (
    DURATION,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    PAYLOAD,
    RUN_ID_TYPE,
    BadInput,
    Unreachable,
    app_option,
    emit_json,
    global_options,
    json_option,
    plain,
    settings,
)
from tako.cli.render import render_run, render_runs, render_status, render_workflows
from tako.cli.text import duration_text, use_colour

if TYPE_CHECKING:
    from tako.takod.storage import Reads

T = TypeVar("T")
ViewShown = tuple[RunView, dict[str, ApprovalView]]  # a run, its open approvals by step key
V = TypeVar("V", RunView, ApprovalView)


def connect() -> Client:
    return Client(settings().socket_path())


def name_arg(value: str, what: str) -> str:
    """Workflow and event names are 1 to 256 characters: check before sending."""
    if not 1 <= len(value) <= 256:
        raise click.BadParameter(f"{what} names are 1 to 256 characters, got {len(value)}")
    return value


def read(
    ask: Callable[[Client], T], offline_read: Callable[[offline.Store], T], app: str | None
) -> T:
    """Ask the supervisor; when it is down, read the app's store directly instead."""
    try:
        return ask(connect())
    except SupervisorUnavailable as exc:
        down = exc
    store = find_store(app, down)
    click.echo(f"tako: supervisor not running; reading {store}", err=True)
    try:
        return offline_read(store)
    except TakoError as exc:
        if exc.code != "storage":
            raise  # e.g. not_found: the database answered, and said no
        raise Unreachable(f"{down.message}\n(and {store} cannot be read: {exc})") from None


def find_store(app: str | None, down: SupervisorUnavailable) -> offline.Store:
    """The app's store, read while the supervisor is down (see `offline.find_database`)."""
    opts = settings()
    url = offline.database_url(opts.database_url)
    return offline.find_database(opts.data_path(), app, Unreachable(down.message), url)


def inherited(ctx: click.Context, name: str, value: Any) -> Any:
    """`tako runs --json show X` means `tako runs show X --json`: fall back to the group's."""
    if value or ctx.parent is None:
        return value
    return ctx.parent.params.get(name)


def now() -> datetime:
    return datetime.now(UTC)


@click.command("run", short_help="Start a run.")
@click.argument("workflow", callback=lambda c, p, v: name_arg(v, "workflow"))
@click.argument("payload", required=False, type=PAYLOAD)
@click.option("--id", "run_id", type=RUN_ID_TYPE, help="Your own run id (idempotent start).")
@click.option("--delay", type=DURATION, help="Start later: 30s, 10m, 1h30m, 2d ...")
@click.option("--wait", is_flag=True, help="Wait for the run to finish and print its result.")
@click.option(
    "--until-parked",
    is_flag=True,
    help="Wait until the run sleeps, waits or finishes, then print where it stands.",
)
@json_option
@global_options
def run_cmd(
    workflow: str,
    payload: Any,
    run_id: str | None,
    delay: float | None,
    wait: bool,
    until_parked: bool,
    as_json: bool,
) -> None:
    """Start a run of WORKFLOW with PAYLOAD (JSON text, @file.json, or - for stdin)."""
    if wait and until_parked:
        raise BadInput("--wait and --until-parked do not go together: pick one")
    client = connect()
    started = client.start_run(workflow, payload, run_id=run_id, delay=delay)
    if until_parked:
        run = _settled(client, started.run_id, "parked")
        if as_json:
            emit_json(run)
        else:
            click.echo(f"run {started.run_id} ({workflow}) {_where(run)}")
            click.echo(f"  tako runs show {started.run_id}")
        return
    if not wait:
        if as_json:
            emit_json({f: getattr(started, f) for f in started.__struct_fields__})
        elif started.deduplicated:
            click.echo(f"run {started.run_id} already exists ({started.status}); not started again")
        else:
            later = f"; starts in {duration_text(delay)}" if delay else ""
            click.echo(f"started run {started.run_id} ({workflow}, {started.status}{later})")
            click.echo(f"  tako runs show {started.run_id}")
        return
    if not as_json:
        click.echo(f"run {started.run_id} ({workflow}) started; waiting for it to finish", err=True)
    run = _settled(client, started.run_id, "finished")
    if as_json:
        emit_json(run)
    elif run.status == RunStatus.COMPLETED:
        emit_json(msgspec.json.decode(run.result))
    if run.status != RunStatus.COMPLETED:
        click.echo(f"Error: run {run.run_id} {run.status}: {run.error}", err=True)
        click.get_current_context().exit(EXIT_REFUSED)


def _settled(client: Client, run_id: str, until: Literal["finished", "parked"]) -> RunView:
    """The run (as takod sends it) once it is finished, or with until="parked" once it
    sleeps or waits too."""
    while True:  # each wait is held at most 300 s by takod; ask again until it is done
        reply = client.call(Wait(run_id=run_id, until=until), WaitReply[RunView])
        if reply.finished:
            return reply.run


def _where(run: RunView) -> str:
    """One line on where a settled run stands: what it waits for, or how it ended."""
    match run.status:
        case RunStatus.WAITING:
            return f'waiting for "{run.waiting_for}"'
        case RunStatus.SLEEPING:
            return "sleeping"
        case RunStatus.COMPLETED:
            result = msgspec.json.decode(run.result)
            return f"completed → {json.dumps(result, ensure_ascii=False)}"
        case status:
            return f"{status}: {run.error}"


@click.command("signal", short_help="Send a signal to waiting runs.")
@click.argument("event", callback=lambda c, p, v: name_arg(v, "event"))
@click.argument("payload", required=False, type=PAYLOAD)
@click.option("--run", "run_id", type=RUN_ID_TYPE, help="Deliver to this run only.")
@click.option("--ttl", type=DURATION, help="Keep an undelivered signal this long (default 7d).")
@json_option
@global_options
def signal_cmd(
    event: str, payload: Any, run_id: str | None, ttl: float | None, as_json: bool
) -> None:
    """Send the signal EVENT with PAYLOAD: wakes the runs waiting on it, else it is kept."""
    result = connect().signal(event, payload, run_id=run_id, ttl=ttl)
    if as_json:
        emit_json({"delivered": result.delivered, "kept": result.kept})
    elif result.delivered:
        plural = "run" if result.delivered == 1 else "runs"
        click.echo(f'signal "{event}" delivered to {result.delivered} {plural}')
    elif result.kept:
        click.echo(f'no run waits on "{event}" now: kept for the first run that waits on it')
    else:
        click.echo(f'signal "{event}" was neither delivered nor kept')


@click.group("runs", invoke_without_command=True)
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@app_option
@json_option
@global_options
@click.pass_context
def runs_group(
    ctx: click.Context,
    status: str | None,
    workflow: str | None,
    limit: int,
    app: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first; or show, cancel or retry one."""
    if ctx.invoked_subcommand is not None:
        return

    def ask(client: Client) -> list[RunView]:
        request = ListRuns(status=status, workflow=workflow, limit=limit)
        return client.call(request, RunsReply[RunView]).runs

    def from_db(store: offline.Store) -> list[RunView]:
        def runs(reads: Reads) -> list[RunView]:
            wanted = offline.offline_status(status)
            return [r for s in wanted for r in reads.runs(status=s, workflow=workflow, limit=limit)]

        rows = offline.read(store, runs)
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [offline.interrupted(run) for run in rows[:limit]]

    runs = read(ask, from_db, app)
    if as_json:
        emit_json(runs)
    else:
        click.echo(render_runs(plain(runs), now=now(), color=use_colour()))


@runs_group.command("show")
@click.argument("run_id", type=RUN_ID_TYPE)
@app_option
@json_option
@global_options
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, app: str | None, as_json: bool) -> None:
    """Show one run with its steps as a timeline."""
    as_json = inherited(ctx, "as_json", as_json)

    def ask(client: Client) -> ViewShown:
        run = client.call(GetRun(run_id=run_id), RunReply[RunView]).run
        if as_json:
            return run, {}
        reply = ApprovalReply[ApprovalView]
        return run, _open_approvals(run, lambda k: client.call(GetApproval(key=k), reply).approval)

    def from_db(store: offline.Store) -> ViewShown:
        def both(reads: Reads) -> ViewShown:
            run = reads.run(run_id)
            return offline.interrupted(run), _open_approvals(run, lambda k: reads.approval(k))

        return offline.read(store, both)

    run, approvals = read(ask, from_db, inherited(ctx, "app", app))
    if as_json:
        emit_json(run)
    else:
        shown = {k: plain(a) for k, a in approvals.items()}
        click.echo(render_run(plain(run), now=now(), color=use_colour(), approvals=shown))


def _open_approvals(run: RunView, get: Callable[[str], T]) -> dict[str, T]:
    """The approval objects of the run's waiting approval steps (who may decide, until
    when), by step key: the run object does not hold them."""
    found: dict[str, T] = {}
    for step in run.steps or []:
        if step.kind == "approval" and step.status == RunStatus.WAITING:
            try:
                found[step.key] = get(f"{run.run_id}:{step.key}")
            except TakoError:  # pruned, or gone: the timeline is drawn without it
                continue
    return found


@runs_group.command("cancel")
@click.argument("run_id", type=RUN_ID_TYPE)
@click.option("--reason", help="Stored as the run's error (default: cancelled).")
@json_option
@global_options
@click.pass_context
def cancel_cmd(ctx: click.Context, run_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel a pending, sleeping, waiting or running run."""
    run = connect().call(Cancel(run_id=run_id, reason=reason), RunReply[RunView]).run
    if inherited(ctx, "as_json", as_json):
        emit_json(run)
    elif run.status == RunStatus.CANCELLED:
        click.echo(f"run {run_id} cancelled")
    else:
        click.echo(f"cancel requested: run {run_id} is {run.status}; it stops at its next step")


@runs_group.command("retry", short_help="Re-queue a failed or cancelled run.")
@click.argument("run_id", type=RUN_ID_TYPE)
@json_option
@global_options
@click.pass_context
def retry_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Re-queue a failed or cancelled run; its finished steps stay cached."""
    run = connect().call(Retry(run_id=run_id), RunReply[RunView]).run
    if inherited(ctx, "as_json", as_json):
        emit_json(run)
    else:
        kept = sum(1 for s in run.steps or [] if s.status == RunStatus.COMPLETED)
        click.echo(f"run {run_id} re-queued ({run.status}); {kept} finished step(s) kept")


@runs_group.command("prune", short_help="Delete finished runs older than the retention.")
@click.option(
    "--older-than",
    type=DURATION,
    help="Delete runs finished longer ago than this (default: [runs] retention, 7d).",
)
@json_option
@global_options
@click.pass_context
def prune_cmd(ctx: click.Context, older_than: float | None, as_json: bool) -> None:
    """Delete finished runs (with their steps and approval requests) older than a duration.

    takod also does this by itself every hour, with `[runs] retention`."""
    pruned = connect().call(Prune(older_than=older_than), PrunedReply).pruned
    if inherited(ctx, "as_json", as_json):
        emit_json({"pruned": pruned})
    else:
        click.echo(f"pruned {pruned} finished run(s)")


@click.command("status", short_help="Is the supervisor up; runs per status.")
@app_option
@json_option
@global_options
def status_cmd(app: str | None, as_json: bool) -> None:
    """Whether the supervisor is up, its workers, runs per status, next wake-up (exit 3: down)."""
    try:
        status = msgspec.to_builtins(connect().call(Status(), StatusReply).fields())
    except SupervisorUnavailable as exc:
        status, message = _status_down(app, exc)
        if as_json:
            emit_json(status)
        else:
            click.echo(render_status(status, now=now(), color=use_colour()))
        click.echo(f"Error: {message}", err=True)
        click.get_current_context().exit(EXIT_UNREACHABLE)
    if as_json:
        emit_json(status)
    else:
        click.echo(render_status(status, now=now(), color=use_colour()))


def _status_down(app: str | None, exc: SupervisorUnavailable) -> tuple[dict[str, Any], str]:
    """The status of a supervisor that is down: counts read from the app's store if there
    is one, and on PostgreSQL the supervisors alive on the database (on other hosts)."""
    from tako.takod.server import supervisor_pid

    data_dir = settings().data_path()
    status: dict[str, Any] = {
        "supervisor": "down",
        "pid": None,
        "workers": 0,
        "runs": {},
        "next_wake_at": None,
    }
    message = exc.message
    pid = supervisor_pid(data_dir) if data_dir.is_dir() else None
    if pid is not None:
        message += f" (a supervisor, pid {pid}, holds {data_dir} but does not answer there)"
    try:
        store = find_store(app, exc)
    except Unreachable:
        return status, message
    lease_ms = int(offline.lease(find_app_dir()) * 1000)

    def fill(reads: Reads) -> None:
        status["runs"] = offline.offline_counts(reads.counts())
        status["next_wake_at"] = iso(reads.next_wake())
        if store.url is not None:
            alive = reads.supervisors(int(time.time() * 1000), lease_ms)
            status["supervisors"] = msgspec.to_builtins(alive)

    try:
        offline.read(store, fill)
    except TakoError as error:
        if error.code != "storage":
            raise
        message += f"\n(and {store} cannot be read: {error})"
    return status, message


@click.command("workflows", short_help="List the app's workflows and load errors.")
@json_option
@global_options
def workflows_cmd(as_json: bool) -> None:
    """The workflows the app defines, and each file that failed to load."""
    try:
        reply = connect().call(Workflows(), WorkflowsReply)
        registry = msgspec.to_builtins({"workflows": reply.workflows, "errors": reply.errors})
    except SupervisorUnavailable as exc:
        here = find_app_dir()
        if not (here / "workflows").is_dir():
            raise Unreachable(
                f"{exc.message}\n(and {here} has no workflows/ folder to read instead)"
            ) from None
        click.echo(f"tako: supervisor not running; loading {here} in a subprocess", err=True)
        registry = offline.describe(here)
    if as_json:
        emit_json(registry)
    else:
        click.echo(render_workflows(registry, color=use_colour()))
