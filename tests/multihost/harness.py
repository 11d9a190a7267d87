"""Several hosts on one machine: network namespaces, a database of their own, real supervisors.

Each host is a network namespace joined to a "db" namespace by a veth pair of its
own; a throwaway PostgreSQL cluster listens only inside the db namespace, so taking
a host's veth down cuts that host (and only it) off from the database, as a lost
host or a partition would. Supervisors run inside their host's namespace with their
own data dir; the test process stays in the root namespace and reaches each of them,
and the database, through unix sockets, which no network namespace stands in the way of.

Every namespace name carries the pid of the test process that made it, so a run that
crashed without cleaning up leaves names the next run recognises as stale (their
owner is dead) and removes, without ever touching those of a run still going.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import tako
from tests.conftest import eventually

PREFIX = "tkmh"  # namespaces and temp dirs: tkmh-<owner pid>-<token>-<role>
SUBNET = "10.231"  # host i's link: SUBNET.i.0/30 (db side .1, host side .2)
DB_ADDRESS = f"{SUBNET}.0.1"  # on the db namespace's loopback; hosts route to it over their link
DB_PORT = 5432  # free by construction: the db namespace and the socket dir are ours alone
TMP = Path("/tmp")  # not $TMPDIR: unix socket paths (takod's, PostgreSQL's) must stay short
AS_POSTGRES = ("runuser", "-u", "postgres", "--")  # initdb refuses root; pg_ctl follows suit
PG_BIN_DIRS = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)


class Unavailable(Exception):
    """This machine cannot host the harness (the message says what is missing)."""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command; its stderr goes into the error, as that is what explains it."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def pg_tool(name: str) -> str | None:
    """initdb / pg_ctl: on PATH, or in Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    return None


def check_requirements() -> None:
    """Raise Unavailable unless namespaces, veths and a PostgreSQL to initdb are all here."""
    need = "the multi-host tests need root, iproute2 (`ip`), runuser and PostgreSQL's initdb"
    if os.geteuid() != 0:
        raise Unavailable(f"not root: {need} (and CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    missing = [t for t in ("ip", "runuser") if not shutil.which(t)]
    missing += [t for t in ("initdb", "pg_ctl") if not pg_tool(t)]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not found: {need}")
    if sh("id", "-u", "postgres", check=False).returncode != 0:
        raise Unavailable("no `postgres` user to run initdb and pg_ctl as (initdb refuses root)")
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        raise Unavailable(f"cannot create a network namespace ({made.stderr.strip()}): {need}")
    try:
        veth = sh(
            "ip",
            "-n",
            probe,
            "link",
            "add",
            "name",
            "va",
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            check=False,
        )
        if veth.returncode != 0:
            raise Unavailable(f"cannot create a veth pair ({veth.stderr.strip()})")
    finally:
        sh("ip", "netns", "del", probe, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]


def netns_pids(ns: str) -> list[int]:
    done = sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def kill_namespace(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in `ns` until none is left: a supervisor's workers live in
    sessions of their own, so the namespace is the one boundary that holds all of them."""
    deadline = time.monotonic() + timeout
    while pids := netns_pids(ns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {ns} survive SIGKILL")
        time.sleep(0.01)


def delete_namespace(ns: str) -> None:
    kill_namespace(ns)
    sh("ip", "netns", "del", ns, check=False)


def remove_stale() -> None:
    """Namespaces and cluster dirs left by earlier runs of this harness whose process is gone."""
    stale = re.compile(rf"^{PREFIX}-(\d+)-")
    for ns in namespaces():
        match = stale.match(ns)
        if match and not _alive(int(match[1])):
            delete_namespace(ns)  # its postmaster too, if it was the db namespace
    for entry in TMP.glob(f"{PREFIX}-*"):
        match = stale.match(entry.name)
        if match and not _alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


class Cluster:
    """A PostgreSQL cluster in a temp dir, listening at DB_ADDRESS inside its own namespace
    (for the hosts) and on a unix socket in its dir (for the test process)."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.ns = f"{PREFIX}-{self.token}-db"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.token}-pg-", dir=TMP))
        self.data = self.dir / "data"
        self.hosts = 0

    @property
    def url(self) -> str:
        """What supervisors in a host namespace connect to: TCP over the host's link."""
        return f"postgresql://postgres@{DB_ADDRESS}:{DB_PORT}/postgres"

    @property
    def local_url(self) -> str:
        """What the test process connects to: the unix socket, whatever link is down."""
        return f"postgresql://postgres@/postgres?host={self.dir}&port={DB_PORT}"

    def start(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{DB_ADDRESS}/32", "dev", "lo")
        shutil.chown(self.dir, "postgres", "postgres")
        initdb = pg_tool("initdb")
        assert initdb
        sh(*AS_POSTGRES, initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0.0/16 trust\n")
        self.start_server()

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl as postgres inside the db namespace (where DB_ADDRESS is), waiting for it."""
        pg_ctl = pg_tool("pg_ctl")
        assert pg_ctl
        sh("ip", "netns", "exec", self.ns, *AS_POSTGRES, pg_ctl, "-D", str(self.data), "-w",
           "-t", "30", *args)  # fmt: skip

    def start_server(self) -> None:
        """Start the postmaster (again); returns once it accepts connections."""
        # fsync off: only an OS crash could lose a commit, and these tests never make one.
        # synchronous_commit stays on: a commit is in the WAL (the OS has it) before the
        # client hears of it, so a crash of the server (stop_server("immediate")) loses
        # nothing takod was told is stored, as a production database would not.
        options = (
            f"-c listen_addresses={DB_ADDRESS} -c port={DB_PORT} -k {self.dir}"
            " -c fsync=off -c synchronous_commit=on -c full_page_writes=off"
            " -c max_connections=300"
        )
        self._pg_ctl("-l", str(self.dir / "postgres.log"), "-o", options, "start")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the postmaster: "fast" (sessions ended, a clean shutdown) or "immediate"
        (every process quits at once, as in a crash: recovery runs at the next start)."""
        self._pg_ctl("-m", mode, "stop")

    def restart_server(self, mode: str = "fast") -> None:
        """`stop_server(mode)` then `start_server()`: every connection is dropped."""
        self.stop_server(mode)
        self.start_server()

    def stop(self) -> None:
        """Whatever state it is in: immediate stop, then anything left in the namespace killed."""
        pg_ctl = pg_tool("pg_ctl")
        if pg_ctl and (self.data / "postmaster.pid").exists():
            sh(*AS_POSTGRES, pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop",
               check=False)  # fmt: skip
        for ns in namespaces():
            if ns.startswith(f"{PREFIX}-{self.token}-"):  # the db's, and any host left behind
                delete_namespace(ns)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "postgres.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    def host(self, name: str) -> Host:
        """A new host namespace linked to the database."""
        self.hosts += 1
        return Host(self, name, self.hosts)


class Host:
    """A machine of its own as far as the network goes: a namespace, its link to the
    database (`cut`/`mend`), its data dir, and at most one supervisor (`python -m tako.takod`)."""

    def __init__(self, cluster: Cluster, name: str, index: int) -> None:
        assert 1 <= index <= 250
        self.cluster = cluster
        self.name = name
        self.ns = f"{PREFIX}-{cluster.token}-{name}"
        self.link = f"h{index}"  # its end in the db namespace
        self.gateway = f"{SUBNET}.{index}.1"
        self.address = f"{SUBNET}.{index}.2"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{cluster.token}-{name}-", dir=TMP))
        self.proc: subprocess.Popen[bytes] | None = None
        self.app_dir: Path | None = None
        self.env: dict[str, str] = {}
        try:
            self._plug_in()
        except BaseException:
            self.remove()
            raise

    def _plug_in(self) -> None:
        """The namespace, its veth pair to the db namespace, addresses and route."""
        db = self.cluster.ns
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "db0", "netns", self.ns, "type", "veth",
           "peer", "name", self.link, "netns", db)  # fmt: skip
        sh("ip", "-n", db, "addr", "add", f"{self.gateway}/30", "dev", self.link)
        sh("ip", "-n", db, "link", "set", self.link, "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.address}/30", "dev", "db0")
        self.mend()

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r})"

    @property
    def socket(self) -> Path:
        return self.data_dir / "tako.sock"

    @property
    def log(self) -> Path:
        """The supervisor's stderr, kept across restarts."""
        return self.data_dir / "takod.log"

    def client(self) -> tako.AsyncClient:
        return tako.AsyncClient(self.socket)

    # -- the link --------------------------------------------------------------

    def cut(self) -> None:
        """Take the host's end of its link down: new connections from the host fail at once
        (no route), open ones get no answer, and the database sees no FIN or RST: to both
        sides it is a lost network, not a closed connection."""
        sh("ip", "-n", self.ns, "link", "set", "db0", "down")

    def mend(self) -> None:
        """Link up again, and the route to the database (a link going down drops it)."""
        sh("ip", "-n", self.ns, "link", "set", "db0", "up")
        sh("ip", "-n", self.ns, "route", "replace", f"{DB_ADDRESS}/32", "via", self.gateway)

    # -- the supervisor --------------------------------------------------------

    async def start_supervisor(self, app_dir: Path, **env: str) -> None:
        """`python -m tako.takod` in this host's namespace, with the cluster as its database and
        `$TAKO_TEST_HOST` naming the host to its workflows (to say where a step ran);
        returns once its socket answers `status()` (fails at once if it exits first)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self} already serves"
        self.app_dir, self.env = app_dir, env
        with self.log.open("ab") as log:
            log.write(f"--- start {time.time():.3f}\n".encode())
            self.proc = subprocess.Popen(
                [
                    *("ip", "netns", "exec", self.ns),  # it execs: self.proc is takod itself
                    *(sys.executable, "-m", "tako.takod", str(app_dir)),
                    *("--data-dir", str(self.data_dir)),
                ],
                env=dict(
                    os.environ, TAKO_DATABASE_URL=self.cluster.url, TAKO_TEST_HOST=self.name, **env
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        client = self.client()
        proc = self.proc

        async def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"takod on {self.name} exited {proc.returncode}:\n{self.tail()}"
                )
            try:
                await client.status()
            except tako.SupervisorUnavailable:
                return False
            return True

        await eventually(up, timeout=30, what=f"takod on {self.name} to answer")

    def kill9(self) -> None:
        """SIGKILL the supervisor and every worker: the host is gone, mid-whatever."""
        kill_namespace(self.ns)
        if self.proc is not None:
            self.proc.wait()

    async def stop_supervisor(self, timeout: float = 30.0) -> int:
        """SIGTERM (drain) and wait for it to exit; its exit code."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        await eventually(lambda: proc.poll() is not None, timeout=timeout, what="takod to exit")
        return int(proc.returncode)

    async def restart_supervisor(self) -> None:
        """Stop it if it still runs (gracefully), then start it again on the same data dir."""
        assert self.app_dir is not None, "start_supervisor first"
        if self.proc is not None and self.proc.poll() is None:
            await self.stop_supervisor()
        await self.start_supervisor(self.app_dir, **self.env)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def remove(self) -> None:
        """Everything this host made: processes, namespace (and so its link), data dir."""
        with contextlib.suppress(RuntimeError):
            kill_namespace(self.ns)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        sh("ip", "netns", "del", self.ns, check=False)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed on the way out whatever happened."""
    remove_stale()
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.stop()
