"""The built wheel, installed in a clean virtualenv, from outside the repository: the
`tako` command, the engine (a real supervisor and worker through the test kit) and
the HTTP app all work, and nothing but `tako` lands at the top of site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import tako
import tako.http
from tako.testing import SyncEnv

FLOW = """
    from tako import workflow

    @workflow("nap")
    async def nap(payload, step):
        await step.sleep("nap", "1d")
        return await step.run("wake", lambda: f"rested {payload}")
"""


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    assert Path(tako.__file__).is_relative_to(site), f"tako imported from {tako.__file__}"
    ours = sorted(p.name for p in site.iterdir() if p.name.startswith(("tako", "takod")))
    assert ours[0] == "tako" and all(n.startswith("tako-") for n in ours[1:]), ours
    for generic in ("takod", "cli", "worker_runtime"):
        assert not (site / generic).exists(), f"{generic} at the top of site-packages"

    tako_cmd = shutil.which("tako", path=str(Path(sys.executable).parent))
    assert tako_cmd, "the wheel installs the tako command"
    version = subprocess.run([tako_cmd, "--version"], capture_output=True, text=True, check=True)
    print("tako --version:", version.stdout.strip())

    with tempfile.TemporaryDirectory() as root:
        app = Path(root) / "app"
        (app / "workflows").mkdir(parents=True)
        (app / "workflows" / "nap.py").write_text(textwrap.dedent(FLOW))
        with SyncEnv(app) as env:
            run_id = env.start("nap", "well")
            assert env.get_run(run_id).status == "sleeping"
            env.advance("1d")
            assert env.result(run_id) == "rested well"
    asgi = tako.http.app(socket=Path(root) / "absent.sock")
    assert any(getattr(r, "path", "") == "/metrics" for r in asgi.routes)
    print("wheel smoke test: ok")


if __name__ == "__main__":
    main()
