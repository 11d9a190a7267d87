"""`tako tokens create|list|revoke`: credentials for the HTTP API.

A token is printed once, when it is created: takod keeps only its hash. New
and revoked tokens take effect at once, with no restart.
"""

from __future__ import annotations

from typing import cast

import click
import msgspec

from tako._protocol import CreateToken, ListTokens, RevokeToken, Scope
from tako._replies import NewTokenReply, RevokedReply, TokenRow, TokensReply
from tako.cli.commands import connect, inherited, name_arg
from tako.cli.options import emit_json, global_options, json_option

SCOPES = ("read", "start", "signal", "decide", "admin")


@click.group("tokens", invoke_without_command=True, short_help="Manage HTTP API tokens.")
@json_option
@global_options
@click.pass_context
def tokens_group(ctx: click.Context, as_json: bool) -> None:
    """Create, list and revoke the tokens HTTP API calls carry (`Authorization: Bearer`).

    With no subcommand: list them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, as_json=as_json)


@tokens_group.command("create", short_help="Create a token and print it once.")
@click.argument("name", callback=lambda c, p, v: name_arg(v, "token"))
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the token may do; repeat for several (--scope read --scope decide).",
)
@json_option
@global_options
@click.pass_context
def create_cmd(ctx: click.Context, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create the token NAME (a decision made with it is recorded as NAME's)."""
    request = CreateToken(name=name, scopes=cast("list[Scope]", list(scopes)))
    reply = connect().call(request, NewTokenReply)
    if inherited(ctx, "as_json", as_json):
        emit_json({"name": reply.name, "token": reply.token, "scopes": reply.scopes})
        return
    click.echo(reply.token)
    click.echo(
        f"token {name!r} ({', '.join(reply.scopes)}): shown this once, only its hash is "
        "kept; store it now",
        err=True,
    )


@tokens_group.command("list", short_help="List tokens (never the tokens themselves).")
@json_option
@global_options
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the tokens by name, with their scopes and when they were made."""
    tokens = connect().call(ListTokens(), TokensReply[TokenRow]).tokens
    if inherited(ctx, "as_json", as_json):
        emit_json(msgspec.to_builtins(tokens))
        return
    if not tokens:
        click.echo("no tokens (create one with `tako tokens create NAME --scope read`)")
        return
    width = max(len("NAME"), *(len(t.name) for t in tokens))
    click.echo(f"{'NAME':<{width}}  {'SCOPES':<30}  CREATED")
    for t in tokens:
        click.echo(f"{t.name:<{width}}  {','.join(t.scopes):<30}  {t.created_at}")


@tokens_group.command("revoke", short_help="Revoke a token at once.")
@click.argument("name")
@json_option
@global_options
@click.pass_context
def revoke_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Revoke the token NAME: calls carrying it are refused from now on."""
    reply = connect().call(RevokeToken(name=name), RevokedReply)
    if inherited(ctx, "as_json", as_json):
        emit_json({"name": name, "revoked": reply.revoked})
    else:
        click.echo(f"revoked token {name!r}")
