"""Every `curl` line of docs/http.md, run as written against the example app, answers
as the doc says.

The doc's shell blocks are run in order, each logical line (backslash
continuations joined) with bash, against a real `tako dev workflows_example`.
`$TAKO` is the server, `$AUTH` a token of `support-lead` (the approver of the
example's refunds), and `$KEY` a refund waiting for that approver, fresh for each
block that uses it (the doc's blocks on one request are alternatives). Before each
line, the runs settle (none pending or running), as they would for a reader. A
`# ...` comment right after a command is its expected output: JSON is compared
exactly; a line with `...` by the `"field":value` pairs it spells out in full.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_harness import HttpDev, eventually, serving

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "http.md"
EXAMPLE = ROOT / "workflows_example"
SET_BY_THE_TEST = re.compile(r"^(TAKO|AUTH|KEY|TOKEN)=")
FIELD = re.compile(r'"\w+":(?:"[^".]*"|true|false|null|-?\d+)')

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def shell_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Each ```sh block: its logical lines, each with the comment lines that follow it."""
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        lines: list[tuple[str, list[str]]] = []
        for line in body.replace("\\\n", " ").splitlines():
            if line.startswith("#"):
                if lines:
                    lines[-1][1].append(line[1:].strip())
            elif line.strip():
                lines.append((line.strip(), []))
        blocks.append(lines)
    return blocks


def check_output(command: str, out: str, expected: list[str]) -> None:
    got = out.splitlines()
    for n, want in enumerate(expected):
        if not want:  # a blank comment line ends what is compared (the rest of a stream)
            break
        assert n < len(got), (command, out, expected)
        if want.startswith("{") and "..." not in want:
            assert json.loads(got[n]) == json.loads(want), (command, got[n])
        elif "..." in want:
            head = want.split("{")[0]
            assert got[n].startswith(head), (command, got[n], want)
            for field in FIELD.findall(want):
                assert field in got[n], (command, field, got[n])
        else:
            assert got[n] == want, (command, got[n])


def is_error(out: str) -> bool:
    try:
        reply = json.loads(out)
    except ValueError:
        return False
    return isinstance(reply, dict) and isinstance(reply.get("error"), dict)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpDev]:
    app = tmp_path_factory.mktemp("doc") / "shop"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".tako", "__pycache__"))
    with serving(app) as server:
        yield server


def test_every_curl_line_of_the_doc_answers_as_written(dev: HttpDev) -> None:
    token = dev.token("support-lead", "read", "start", "signal", "decide")
    eventually(lambda: dev.http.get("/api/runs").status_code == 401, what="the token to count")
    env = {"PATH": "/usr/bin:/bin", "TAKO": dev.url, "AUTH": f"Authorization: Bearer {token}"}
    auth = dev.as_(token)

    def settled() -> bool:
        runs = auth.get("/api/runs").json()
        return all(r["status"] not in ("pending", "running") for r in runs)

    def waiting_refund() -> str:
        payload = {"order_id": 42, "amount": 129900, "reason": "arrived broken"}
        run_id = auth.post("/api/runs", json={"workflow": "refund", "payload": payload})
        key = f"{run_id.json()['run_id']}:approve-refund"
        eventually(lambda: auth.get(f"/api/approvals/{key}").status_code == 200, what=key)
        return key

    ran = 0
    for block in shell_blocks(DOC.read_text()):
        if not any("curl " in line for line, _ in block):
            continue
        if any("$KEY" in line for line, _ in block):
            env["KEY"] = waiting_refund()
        for line, expected in block:
            if SET_BY_THE_TEST.match(line):
                continue
            line = line.replace("http://127.0.0.1:8787", "$TAKO")
            eventually(settled, what="the runs to settle")
            if (assigned := re.match(r"^([A-Z_]+)=", line)) is not None:
                name = assigned.group(1)
                done = subprocess.run(
                    ["bash", "-c", f'{line}\nprintf %s "${name}"'],
                    env=env, capture_output=True, text=True, timeout=30, check=True,
                )  # fmt: skip
                env[name] = done.stdout
                assert env[name], (line, done.stderr)
                continue
            stream = " -sN " in line
            if stream:  # a stream never ends: what it sends in its first second is enough
                line = line.replace(" -sN ", " -sN --max-time 1 ")
            done = subprocess.run(
                ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=30
            )
            assert done.returncode == (28 if stream else 0), (line, done.stderr)
            assert not is_error(done.stdout), (line, done.stdout)
            check_output(line, done.stdout, expected)
            ran += 1
    assert ran >= 10, ran
