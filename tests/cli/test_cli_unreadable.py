"""Numbers JSON readers cannot hold: refused by `tako run`, and never a traceback in `tako runs`."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from cli_harness import DevServer, make_app, short_data_dir, tako_cmd

FLOWS = """
    from tako import workflow

    @workflow(retries=0)
    async def echo(payload, step):
        return payload
"""


def test_tako_run_refuses_a_number_out_of_range() -> None:
    """`1e400` would be read as infinity and sent as null: refused before anything is sent."""
    result = tako_cmd("run", "echo", '{"x": [1e400]}', "--data-dir", short_data_dir())
    assert result.code == 2, result
    assert "1e400 is out of range" in result.err and "Traceback" not in result.err


def test_runs_lists_a_row_of_unreadable_json_up_and_down(tmp_path: Path) -> None:
    """A row written by hand (or before takod refused such values): every listing works."""
    app = make_app(tmp_path / "app", {"flows.py": FLOWS}, name="shop")
    data_dir = short_data_dir()
    server = DevServer(app, data_dir)
    try:
        client = server.client()
        good = client.start("echo", {"n": 1})
        assert client.result(good, timeout=30) == {"n": 1}
        bad = client.start("echo", {"n": 2}, delay=3600)
        with sqlite3.connect(data_dir / "apps" / "shop" / "runs.db", timeout=10) as db:
            db.execute(
                "UPDATE runs SET payload = ?, result = ? WHERE id = ?",
                (b'{"n": 1e400}', b"[NaN, Infinity]", bad),
            )
        listings = [server.tako("runs"), server.tako("runs", "--json")]
        listings.append(server.tako("runs", "show", bad, "--json"))
        assert server.stop() == 0
        listings += [server.tako("runs", cwd=app), server.tako("runs", "--json", cwd=app)]
        listings.append(server.tako("runs", "show", bad, "--json", cwd=app))
    finally:
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    for result in listings:
        assert result.code == 0 and "Traceback" not in result.err, result
    for text in (listings[0].out, listings[3].out):
        assert good in text and bad in text, text
    for listed in (listings[1].json(), listings[4].json()):
        runs = {r["run_id"]: r for r in listed}
        assert runs[good]["payload"] == {"n": 1}
        assert runs[bad]["payload"] == {"unreadable_json": '{"n": 1e400}'}
        assert runs[bad]["result"] == {"unreadable_json": "[NaN, Infinity]"}
    assert listings[2].json()["payload"] == listings[5].json()["payload"]
