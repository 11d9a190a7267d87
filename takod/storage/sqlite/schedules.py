"""The backends' writes on cron schedules: the app's schedules kept in step with its
workflows, and the runs of the ticks that fall due.

A tick's run has the id `<workflow>@<tick>`, so it is created once whatever
happens: a supervisor restarted just after creating it, or two supervisors on
one PostgreSQL database reaching the same tick, create it once (the second
finds the id taken). The `schedules` row moves on to the next tick in the same
transaction; the timer's due times include it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic

from tako import _cron as cron
from tako.takod.storage.interface import Created, NewRun, ScheduleSpec
from tako.takod.storage.sqlite.approvals import ApprovalWrites, C


class ScheduleWrites(ApprovalWrites[C], Generic[C]):
    def sync_schedules(self, specs: Sequence[ScheduleSpec], now: int, *, complete: bool) -> None:
        """Make the stored schedules the app's. A new schedule, or one whose cron or
        time zone changed, starts at its first tick after `now`; an unchanged one keeps
        its next tick (in the past after a pause: caught up per its catch_up). With
        `complete` False (a workflow file failed to load) no schedule is dropped."""
        stored = {
            row[0]: (row[1], row[2])
            for row in self.conn.execute("SELECT workflow, expression, timezone FROM schedules")
        }
        for spec in specs:
            if stored.pop(spec.workflow, None) == (spec.expression, spec.timezone):
                self.conn.execute(
                    "UPDATE schedules SET catch_up = ?, max_attempts = ?, timeout_ms = ?"
                    " WHERE workflow = ?",
                    (spec.catch_up, spec.max_attempts, spec.timeout_ms, spec.workflow),
                )
                continue
            next_at = cron.next_tick(spec.expression, spec.timezone, now)
            self.conn.execute(
                "INSERT INTO schedules (workflow, expression, timezone, catch_up, max_attempts,"
                " timeout_ms, next_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow) DO"
                " UPDATE SET expression = excluded.expression, timezone = excluded.timezone,"
                " catch_up = excluded.catch_up, max_attempts = excluded.max_attempts,"
                " timeout_ms = excluded.timeout_ms, next_at = excluded.next_at",
                (*spec, next_at),
            )
        if complete:
            for workflow in stored:
                self.conn.execute("DELETE FROM schedules WHERE workflow = ?", (workflow,))

    def due_ticks(self, now: int) -> list[str]:
        """Start the runs of every tick due by `now`; returns those created."""
        rows: list[Any] = self.conn.execute(
            "SELECT workflow, expression, timezone, catch_up, max_attempts, timeout_ms, next_at"
            " FROM schedules WHERE next_at <= ?" + self.dialect.skip_locked,
            (now,),
        ).fetchall()
        started: list[str] = []
        for workflow, expression, timezone, catch_up, max_attempts, timeout_ms, next_at in rows:
            ticks, following = cron.ticks_due(expression, timezone, next_at, now, catch_up)
            for tick in ticks:
                rid = f"{workflow}@{cron.tick_text(tick)}"
                new = NewRun(workflow, b"null", max_attempts, rid, None, timeout_ms)
                if not self.create_run(new, now).deduplicated:
                    started.append(rid)
            self.conn.execute(
                "UPDATE schedules SET next_at = ?, last_tick = COALESCE(?, last_tick)"
                " WHERE workflow = ?",
                (following, ticks[-1] if ticks else None, workflow),
            )
        return started

    # -- supplied by the runs' writes ----------------------------------------------------

    def create_run(self, new: NewRun, now: int) -> Created:
        raise NotImplementedError
