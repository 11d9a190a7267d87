"""`tako runs prune [--older-than DUR]`: finished runs deleted on demand."""

from __future__ import annotations

from pathlib import Path

from cli_harness import DevServer, make_app

QUICK = """
from tako import workflow

@workflow
async def quick(payload, step):
    return await step.run("one", lambda: payload)

@workflow
async def parked(payload, step):
    return await step.wait_for("never")
"""


def test_prune_deletes_finished_runs_older_than_asked(tmp_path: Path, data_dir: Path) -> None:
    app = make_app(tmp_path / "pruneapp", {"quick.py": QUICK})
    server = DevServer(app, data_dir)
    try:
        for n in range(3):
            assert server.tako("run", "quick", str(n), "--id", f"q-{n}", "--wait").code == 0
        server.tako("run", "parked", "--id", "p-1")
        server.wait_status("p-1", "waiting")
        kept = server.tako("runs", "prune", "--json")  # default: the 7-day retention
        assert (kept.code, kept.json()) == (0, {"pruned": 0})
        pruned = server.tako("runs", "prune", "--older-than", "0s")
        assert (pruned.code, pruned.out.strip()) == (0, "pruned 3 finished run(s)")
        assert server.tako("runs", "show", "q-1").code == 1  # gone
        left = [r["run_id"] for r in server.tako("runs", "--json").json()]
        assert left == ["p-1"]  # unfinished runs are never pruned
        bad = server.tako("runs", "prune", "--older-than", "soon")
        assert bad.code == 2 and "soon" in bad.err
    finally:
        server.kill()
