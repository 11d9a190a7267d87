"""`tako schedules`: the app's cron schedules with their next and last ticks."""

from __future__ import annotations

from datetime import datetime

import click
import msgspec

from tako._protocol import Schedules
from tako._replies import SchedulesReply
from tako.cli.commands import connect
from tako.cli.options import emit_json, global_options, json_option
from tako.cli.text import Paint, table, use_colour, when_text


@click.command("schedules", short_help="List the app's cron schedules and their next ticks.")
@json_option
@global_options
def schedules_cmd(as_json: bool) -> None:
    """The workflows with a `schedule=`, the next due first: their cron, time zone, what
    happens to ticks missed while nothing ran (catch-up), and their next and last tick
    (each tick's run has the id `<workflow>@<tick>`)."""
    rows = connect().call(Schedules(), SchedulesReply).schedules
    if as_json:
        emit_json(msgspec.to_builtins(rows))
        return
    if not rows:
        click.echo('no schedules: add schedule="..." to a @workflow to run it on a cron')
        return
    paint, now = Paint(use_colour()), datetime.now().astimezone()
    cells = [
        [
            r.workflow,
            f"{r.schedule} ({r.timezone})",
            when_text(r.next_tick, now),
            when_text(r.last_tick, now) if r.last_tick else "-",
            r.catch_up,
        ]
        for r in rows
    ]
    header = ["workflow", "schedule", "next tick", "last tick", "catch-up"]
    click.echo(table(cells, header, paint))
