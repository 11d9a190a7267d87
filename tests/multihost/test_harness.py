"""The harness itself: a cut link isolates one host and only it; a mend undoes it; a
supervisor restarts on its data dir. The fault tests mean nothing if these do not hold."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.conftest import App
from tests.multihost.harness import Cluster, Host

PROBE = """
import sys, psycopg
try:
    with psycopg.connect(sys.argv[1], connect_timeout=2) as conn:
        print(conn.execute("SELECT inet_client_addr()").fetchone()[0])
except psycopg.OperationalError:
    print("unreachable")
"""


def reach(host: Host) -> str:
    """What the database sees as this host's address, or "unreachable", from inside it."""
    argv = ["ip", "netns", "exec", host.ns, sys.executable, "-c", PROBE, host.cluster.url]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def test_a_cut_isolates_that_host_until_mended(
    db: Cluster, make_host: Callable[[str], Host]
) -> None:
    a, b = make_host("a"), make_host("b")
    assert (reach(a), reach(b)) == (a.address, b.address)
    a.cut()
    assert (reach(a), reach(b)) == ("unreachable", b.address)
    a.mend()
    assert reach(a) == a.address


async def test_a_supervisor_restarts_and_serves_again(
    app: App, make_host: Callable[[str], Host]
) -> None:
    app.write(
        "noop.py",
        "from tako import workflow\n\n@workflow\nasync def noop(p, step):\n    return p\n",
    )
    a = make_host("a")
    await a.start_supervisor(app.dir)
    first = a.proc
    await a.restart_supervisor()
    assert a.proc is not first and first is not None and first.returncode == 0
    run_id = await a.client().start("noop", 7)
    assert await a.client().result(run_id, timeout=30) == 7
    a.kill9()
    assert a.proc is not None and a.proc.returncode == -9
