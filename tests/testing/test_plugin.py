"""The `tako_env` fixture in a project of its own: no conftest, only `pip install tako`.

A generated project (an app and a test file) is tested by a pytest subprocess,
as a user's CI would: the fixture comes from the package's entry point, finds
the app above the test file, and serves asyncio, trio and plain tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ORDER = """
    from tako import Step, workflow

    @workflow("order")
    async def order(payload, step: Step):
        await step.sleep("cool-off", "2d")
        decision = await step.approval("ship", summary="Ship it?", timeout="7d")
        return decision.status
"""

TESTS = """
    import pytest

    @pytest.mark.asyncio
    async def test_under_asyncio(tako_env):
        run_id = await tako_env.start("order")
        await tako_env.advance("2d")
        await tako_env.approve(f"{run_id}:ship", by="ann")
        assert await tako_env.result(run_id) == "approved"

    @pytest.mark.trio
    async def test_under_trio(tako_env):
        run_id = await tako_env.start("order")
        await tako_env.advance("2d")
        await tako_env.reject(f"{run_id}:ship", by="bo", reason="out of stock")
        assert await tako_env.result(run_id) == "rejected"

    def test_plain(tako_env):
        run_id = tako_env.sync.start("order")
        tako_env.sync.advance("9d")
        assert tako_env.sync.result(run_id) == "timed_out"
"""


def project(root: Path, ini: str = "") -> Path:
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "order.py").write_text(textwrap.dedent(ORDER))
    (root / "tests").mkdir()
    (root / "tests" / "test_order.py").write_text(textwrap.dedent(TESTS))
    (root / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini
    )
    return root


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=300)


def test_the_fixture_serves_asyncio_trio_and_plain_tests(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    done = pytest_in(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout


def test_the_example_apps_own_tests_pass() -> None:
    """workflows_example/tests, as docs/testing.md shows them: approve, reject, time out."""
    done = pytest_in(Path(__file__).resolve().parents[2] / "workflows_example")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout


def test_the_app_folder_can_be_named_in_the_ini_file(tmp_path: Path) -> None:
    root = project(tmp_path / "repo" / "shop")
    (tmp_path / "repo" / "tests").mkdir()
    (root / "tests" / "test_order.py").rename(tmp_path / "repo" / "tests" / "test_order.py")
    (tmp_path / "repo" / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\ntako_app_dir = shop\n"
    )
    done = pytest_in(tmp_path / "repo")
    assert "3 passed" in done.stdout, done.stdout + done.stderr
    (tmp_path / "repo" / "pytest.ini").write_text("[pytest]\n")
    done = pytest_in(tmp_path / "repo")
    assert done.returncode != 0
    assert "no folder with workflows/ above" in done.stdout + done.stderr
