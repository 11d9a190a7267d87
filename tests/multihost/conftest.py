"""Fixtures: one throwaway PostgreSQL cluster per session, hosts per test, one app folder.

Where the machine cannot do it (not root, no `ip`, no initdb), the tests skip saying
what they need; with `CI` set they fail instead, as tests/pg.py does: a CI machine
meant to run them that cannot is a broken run, not a reason to test less.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import App
from tests.multihost.harness import Cluster, Host, Unavailable, check_requirements, cluster
from tests.pg import fresh_app


@pytest.fixture(scope="session")
def db() -> Iterator[Cluster]:
    """The database every host's supervisor shares; each test's app has a schema of its own."""
    try:
        check_requirements()
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with cluster() as made:
        yield made


@pytest.fixture
def make_host(db: Cluster, tmp_path: Path) -> Iterator[Callable[[str], Host]]:
    """`make_host("a")`: a host linked to the database; all of them removed after the test,
    their supervisors' logs printed first (pytest shows them when the test failed) and
    kept whole in the test's tmp_path (`takod-<host>.log`)."""
    made: list[Host] = []

    def make(name: str) -> Host:
        host = db.host(name)
        made.append(host)
        return host

    yield make
    print(f"--- postgres:\n{db.log_tail(10)}")
    for host in made:
        print(f"--- takod on {host.name} ({host.ns}):\n{host.tail()}")
        if host.log.exists():
            shutil.copyfile(host.log, tmp_path / f"takod-{host.name}.log")
        host.remove()


@pytest.fixture
def app(tmp_path: Path) -> App:
    """The one app folder all hosts serve, named afresh so its schema is this test's alone.
    (Each host has its own data dir and socket: `App.socket` is not used here.)"""
    return App(tmp_path / "app", tmp_path, "asyncio", fresh_app())
