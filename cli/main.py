"""The `tako` command: thin click commands over the client and `takod.serve`.

This module assembles the command tree and maps errors to exit codes in one
place: 1 when the supervisor refused (a typed `TakoError` from the client),
2 for a wrong command line (click's usage errors, and our argument types),
3 when the supervisor cannot be reached.
"""

from __future__ import annotations

from typing import Any

import click

from tako import SupervisorUnavailable, TakoError
from tako.cli.approvals import approvals_group, approve_cmd, reject_cmd
from tako.cli.commands import run_cmd, runs_group, signal_cmd, status_cmd, workflows_cmd
from tako.cli.db import db_group
from tako.cli.dev import dev_cmd
from tako.cli.options import Refused, Unreachable, global_options
from tako.cli.schedules import schedules_cmd
from tako.cli.serve import serve_cmd
from tako.cli.tokens import tokens_group


class TakoGroup(click.Group):
    """The root group: turns the client's typed errors into exit codes 1 and 3."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SupervisorUnavailable as exc:
            raise Unreachable(exc.message) from None
        except TakoError as exc:
            raise Refused(exc.message) from None


@click.group(cls=TakoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="tako", message="tako %(version)s")
def main() -> None:
    """tako: durable workflows for Python.

    Start the supervisor with `tako dev` in your app folder, then start and
    inspect runs from another terminal.
    """


main.add_command(dev_cmd)
main.add_command(serve_cmd)
main.add_command(run_cmd)
main.add_command(signal_cmd)
main.add_command(runs_group)
main.add_command(status_cmd)
main.add_command(workflows_cmd)
main.add_command(schedules_cmd)
main.add_command(approvals_group)
main.add_command(approve_cmd)
main.add_command(reject_cmd)
main.add_command(tokens_group)
main.add_command(db_group)

if __name__ == "__main__":
    main()
