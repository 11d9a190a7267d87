"""What `tako dev` prints: the banner, and one line per run event.

Pure functions of their inputs (the clock and colour are parameters), so
they are tested without a supervisor. `cli/dev.py` wires them to takod's
`on_event` hook and to stdout.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from tako._records import FINISHED
from tako.cli.render import render_workflows
from tako.cli.text import Paint, duration_text, local_time, relative, truncate


def banner(
    *,
    app: str,
    app_dir: Path,
    data_dir: Path,
    socket: Path,
    database: Path | str,
    registry: Mapping[str, Any],
    hints: Sequence[str],
    color: bool = False,
    http: str | None = None,
) -> str:
    """Where everything is, what was loaded, and what to type next."""
    paint = Paint(color)
    rows = [
        ("app dir", str(app_dir)),
        ("data dir", str(data_dir)),
        ("socket", str(socket)),
        ("database", str(database)),
    ]
    if http:
        rows.append(("http", f"{http}  (runs: {http}/ · inbox: {http}/inbox)"))
    lines = [paint(f"tako dev · app {app}", bold=True)]
    lines += [f"  {paint.dim(k.ljust(8))}  {v}" for k, v in rows]
    lines += ["", render_workflows(registry, color=color), ""]
    if hints:
        lines.append(paint("next, in another terminal:", bold=True))
        lines += [f"  {hint}" for hint in hints]
        lines.append("")
    lines.append(paint.dim("watching workflows/ for changes · Ctrl-C to stop"))
    return "\n".join(lines)


def hints(
    registry: Mapping[str, Any], *, data_dir: Path, socket: Path, cwd: Path, default_socket: Path
) -> list[str]:
    """The commands to try next, with `--data-dir`/`--socket` when this folder would not find us."""
    extra = ""
    if data_dir != cwd / ".tako":
        extra += f" --data-dir {data_dir}"
    if socket != default_socket:
        extra += f" --socket {socket}"
    workflows = registry.get("workflows") or []
    out = []
    if workflows:
        first = workflows[0]
        payload = json.dumps(first.get("payload_example", {}), separators=(",", ":"))
        out.append(f"tako run {first['name']} {shlex.quote(payload)}{extra}")
    out += [f"tako runs{extra}", f"tako status{extra}"]
    return out


class EventFormatter:
    """Turns takod's `on_event(kind, fields)` calls into log lines.

    It remembers each run's workflow (from `started`/`running`) so that every
    line about a run can name it."""

    def __init__(self, *, color: bool = False, tz: tzinfo | None = None) -> None:
        self.paint = Paint(color)
        self.tz = tz
        self.workflows: dict[str, str] = {}

    def line(self, kind: str, fields: Mapping[str, Any], now: datetime) -> str | None:
        """The line for one event, or None for events `tako dev` reports otherwise."""
        if "workflow" in fields and "run_id" in fields:
            self.workflows[fields["run_id"]] = fields["workflow"]
        text = self._text(kind, fields, now)
        if text is None:
            return None
        stamp = self.paint.dim(now.astimezone(self.tz).strftime("%H:%M:%S"))
        run_id = fields.get("run_id")
        if run_id is None:
            return f"{stamp}  {text}"
        workflow = self.workflows.get(run_id, "?")
        if kind in FINISHED:
            self.workflows.pop(run_id, None)
        return f"{stamp}  {self.paint(run_id, bold=True)} {self.paint.dim(workflow)}  {text}"

    def _text(self, kind: str, f: Mapping[str, Any], now: datetime) -> str | None:
        p = self.paint
        error = truncate(str(f.get("error") or ""), 120)
        match kind:
            case "started":
                return p("▶ started", "blue")
            case "running":
                attempt = f.get("attempt", 1)
                return p.dim("running" if attempt == 1 else f"running (attempt {attempt})")
            case "step" if f.get("status") == "failed":
                took = duration_text((f.get("ms") or 0) / 1000)
                return p(f"✗ step {f.get('key')} failed after {took}: {error}", "red")
            case "step":
                took = duration_text((f.get("ms") or 0) / 1000)
                return f"{p('✓', 'green')} step {f.get('key')} ({took})"
            case "parked":
                return self._parked(f, now, error)
            case "woke" if str(f.get("by") or "").startswith("approval "):
                # takod says `approval <key> <status>` when a decision resumed the run
                key, _, status = str(f["by"]).removeprefix("approval ").rpartition(" ")
                return p(f"◄ approval {key} {status.replace('_', ' ')}", "cyan")
            case "woke":
                return p(f'◄ woken by signal "{f.get("by")}"', "cyan")
            case "retrying":
                wake = _when(f.get("wake_at"))
                after = relative(wake, now) if wake else "soon"
                return p(f"↻ attempt failed: {error}; retrying {after}", "yellow")
            case "completed":
                return p("✔ completed", "green", bold=True)
            case "failed":
                return p(f"✘ failed: {error}", "red", bold=True)
            case "cancelled":
                return p(f"⊘ cancelled: {error or 'cancelled'}", "yellow", bold=True)
            case "worker_lost":
                return p(f"⚠ {f.get('reason')} ({f.get('runs')} run(s) in flight)", "red")
            case "pruned":
                return p.dim(f"pruned {f.get('runs')} finished run(s) past retention")
            case "released":
                return p.dim(
                    f"⏏ paused after step {f.get('key')}: resumes when tako dev starts again"
                )
            case "reloaded":
                return None  # `tako dev` prints the reloaded workflows itself
            case "output":  # what a workflow file printed while it was imported
                lines = str(f.get("text") or "").rstrip("\n").split("\n")
                return f"\n{' ' * 10}".join(f"{f.get('file')} │ {line}" for line in lines)
            case _:
                return " ".join([kind, *(f"{k}={v}" for k, v in f.items() if k != "run_id")])

    def _parked(self, f: Mapping[str, Any], now: datetime, error: str) -> str:
        p = self.paint
        wake = _when(f.get("wake_at"))
        until = local_time(wake, now, self.tz) if wake else ""
        match f.get("kind"):
            case "sleep":
                return p(f"⏸ sleeping until {until} ({f.get('key')})", "cyan")
            case "wait":
                limit = f"until {until}" if wake else "no timeout"
                return p(f'⏸ waiting for "{f.get("event")}" ({limit})', "cyan")
            case "approval":
                key = f"{f.get('run_id')}:{f.get('key')}"
                return p(f"⏸ waiting for approval {key} (tako approve {key} --by <you>)", "cyan")
            case _:
                later = relative(wake, now) if wake else "later"
                return p(f"↻ step {f.get('key')} failed: {error}; retrying {later}", "yellow")


def _when(ms: Any) -> datetime | None:
    """takod's events carry times as integer milliseconds since the epoch."""
    if not isinstance(ms, int | float):
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)
