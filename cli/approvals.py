"""The approval commands: approvals (list, show, cancel), approve, reject.

Like the other client commands they are thin: parse, call the supervisor,
print. `--json` prints the approval objects as takod sent them; a decision
prints the request without its `history`, which only `approvals show` has.
`approvals` and `approvals show` read the database, read-only, when the
supervisor is down, like `runs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec
from click.core import ParameterSource

from tako import Client
from tako._protocol import (
    ABSENT,
    ApprovalLinks,
    Approve,
    CancelApproval,
    ClientRequest,
    GetApproval,
    ListApprovals,
    Reject,
)
from tako._records import ApprovalView
from tako._replies import ApprovalReply, ApprovalsReply, LinksReply
from tako.cli import offline
from tako.cli.commands import connect, inherited, name_arg, now, read
from tako.cli.options import PAYLOAD, app_option, emit_json, global_options, json_option, plain
from tako.cli.render_approvals import render_approval, render_approvals, render_decided
from tako.cli.text import use_colour

F = TypeVar("F", bound=Callable[..., Any])
STATUSES = ("pending", "approved", "edited", "rejected", "timed_out", "cancelled")


def actor_option(help_text: str) -> Callable[[F], F]:
    """`--by NAME`: who decides; required, 1 to 256 characters (exit 2 otherwise)."""

    def decorate(fn: F) -> F:
        return click.option(
            "--by",
            required=True,
            metavar="NAME",
            callback=lambda c, p, v: name_arg(v, "actor"),
            help=help_text,
        )(fn)

    return decorate


def print_decided(request: ClientRequest, as_json: bool) -> None:
    """Send a decision and print the request as it left it; `history` is for
    `approvals show` only."""
    approval = connect().call(request, ApprovalReply[ApprovalView]).approval
    fields = {k: v for k, v in plain(approval).items() if k != "history"}
    if as_json:
        emit_json(fields)
    else:
        click.echo(render_decided(fields, color=use_colour()))


@click.group("approvals", invoke_without_command=True, short_help="List approval requests.")
@click.option("--approver", metavar="NAME", help="Only requests this person may decide.")
@click.option("--workflow", help="Only requests of runs of this workflow.")
@click.option(
    "--status",
    type=click.Choice([*STATUSES, "all"]),
    default="pending",
    show_default=True,
    help="Only requests with this status.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@app_option
@json_option
@global_options
@click.pass_context
def approvals_group(
    ctx: click.Context,
    approver: str | None,
    workflow: str | None,
    status: str,
    limit: int,
    app: str | None,
    as_json: bool,
) -> None:
    """List approval requests, pending ones by default, oldest first; or show or cancel one."""
    if ctx.invoked_subcommand is not None:
        return
    wanted = None if status == "all" else status
    filters: dict[str, Any] = {"approver": approver, "workflow": workflow, "status": wanted}

    def ask(client: Client) -> list[ApprovalView]:
        request = ListApprovals(**filters, limit=limit)
        return client.call(request, ApprovalsReply[ApprovalView]).approvals

    def from_db(store: offline.Store) -> list[ApprovalView]:
        return offline.read(store, lambda r: r.approvals(**filters, limit=limit))

    approvals = read(ask, from_db, app)
    if as_json:
        emit_json(approvals)
    else:
        empty = f"no {'' if wanted is None else wanted.replace('_', ' ') + ' '}approval requests"
        empty = "no pending approvals" if wanted == "pending" else empty
        shown = plain(approvals)
        click.echo(render_approvals(shown, now=now(), color=use_colour(), empty=empty))


@approvals_group.command("show", short_help="Show one approval request with its history.")
@click.argument("key")
@click.option(
    "--links", "with_links", is_flag=True, help="Also print each approver's signed links."
)
@app_option
@json_option
@global_options
@click.pass_context
def show_cmd(
    ctx: click.Context, key: str, with_links: bool, app: str | None, as_json: bool
) -> None:
    """Show one approval request (KEY is `<run_id>:<step>`) with its history.

    `--links` adds the signed links of the HTTP pages (view, approve, reject) for each
    approver, `*` when anyone may decide; they need the supervisor (it holds the key)."""

    def from_db(store: offline.Store) -> ApprovalView:
        return offline.read(store, lambda r: r.approval(key))

    approval = read(
        lambda c: c.call(GetApproval(key=key), ApprovalReply[ApprovalView]).approval,
        from_db,
        inherited(ctx, "app", app),
    )
    links = connect().call(ApprovalLinks(key=key), LinksReply).links if with_links else None
    shown = plain(approval)
    if inherited(ctx, "as_json", as_json):
        emit_json(shown if links is None else {**shown, "links": links})
        return
    click.echo(render_approval(shown, now=now(), color=use_colour()))
    for approver, urls in (links or {}).items():
        who = "anyone" if approver == "*" else approver
        click.echo(f"\nlinks for {who}:")
        for action in ("view", "approve", "reject"):
            click.echo(f"  {action:<8} {urls[action]}")


@approvals_group.command("cancel", short_help="Cancel a pending approval request.")
@click.argument("key")
@actor_option("Who cancels (recorded in the history).")
@click.option("--reason", help="Why (recorded in the history and the decision).")
@json_option
@global_options
@click.pass_context
def cancel_cmd(ctx: click.Context, key: str, by: str, reason: str | None, as_json: bool) -> None:
    """Cancel the request KEY: its run continues with the decision `cancelled`."""
    request = CancelApproval(key=key, by=by, reason=reason)
    print_decided(request, inherited(ctx, "as_json", as_json))


@click.command("approve", short_help="Approve a request, as is or with an edited value.")
@click.argument("key")
@actor_option("Who approves; must be one of the request's approvers, if it names any.")
@click.option(
    "--value",
    type=PAYLOAD,
    metavar="JSON",
    help="Approve this edited value instead (JSON text, @file.json, or - for stdin).",
)
@json_option
@global_options
@click.pass_context
def approve_cmd(ctx: click.Context, key: str, by: str, value: Any, as_json: bool) -> None:
    """Approve the request KEY (`<run_id>:<step>`, see `tako approvals`)."""
    edited = ctx.get_parameter_source("value") is ParameterSource.COMMANDLINE
    raw = msgspec.Raw(msgspec.json.encode(value)) if edited else ABSENT  # null is an edit too
    print_decided(Approve(key=key, by=by, value=raw), as_json)


@click.command("reject", short_help="Reject a request, with a reason.")
@click.argument("key")
@actor_option("Who rejects; must be one of the request's approvers, if it names any.")
@click.option(
    "--reason",
    required=True,
    callback=lambda c, p, v: v if v.strip() else _no_reason(),
    help="Why (required; the workflow gets it as decision.reason).",
)
@json_option
@global_options
def reject_cmd(key: str, by: str, reason: str, as_json: bool) -> None:
    """Reject the request KEY (`<run_id>:<step>`, see `tako approvals`)."""
    print_decided(Reject(key=key, by=by, reason=reason), as_json)


def _no_reason() -> str:
    raise click.BadParameter("a rejection needs a reason")
