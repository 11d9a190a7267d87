"""The approver's pages in a real browser: Playwright driving Debian's Chromium.

Needs `apt-get install chromium` (Playwright's own browser download cannot
be used here). Without it these tests skip, except under CI, where they
must run. Screenshots are saved in each test's temp folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_harness import HttpDev, http_dev

CHROMIUM = os.environ.get("TAKO_CHROMIUM", "/usr/bin/chromium")

if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests must run in CI: no Chromium at {CHROMIUM}")
    pytest.skip(
        "browser tests need Chromium: `apt-get install chromium` (or set TAKO_CHROMIUM)",
        allow_module_level=True,
    )

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need playwright: pip install -e '.[test]'"
)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpDev]:
    with http_dev(tmp_path_factory.mktemp("browser") / "shop") as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def ask(dev: HttpDev, **payload: Any) -> str:
    reply = dev.http.post("/api/runs", json={"workflow": "refund", "payload": payload})
    run_id: str = reply.json()["run_id"]
    assert dev.parked(run_id)["status"] == "waiting"
    return f"{run_id}:manager"


def test_approve_from_a_link_in_the_browser(dev: HttpDev, chromium: Any, tmp_path: Path) -> None:
    key = ask(dev, summary="<script>window.pwned = 1</script> Refund $120")
    link = dev.tako("approvals", "show", key, "--links", "--json").json()["links"]["alice"]
    page = chromium.new_page()
    page.goto(link["approve"])
    assert page.locator("#approval-status").inner_text() == "pending"
    page.screenshot(path=str(tmp_path / "1-pending.png"), full_page=True)
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(link["view"])
    assert page.locator("#approval-status").inner_text() == "approved"
    assert "approved by alice" in page.locator("#decision").inner_text()
    assert page.get_by_role("button", name="Approve").count() == 0
    assert page.evaluate("window.pwned === undefined")  # the summary was text, not a script
    page.screenshot(path=str(tmp_path / "2-approved.png"), full_page=True)
    run = dev.parked(key.split(":")[0])
    assert run["status"] == "completed"
    page.goto(f"{dev.url}/runs/{run['run_id']}")
    assert "completed" in page.locator("#timeline").inner_text()
    page.close()


def test_the_inbox_fits_a_phone(dev: HttpDev, chromium: Any, tmp_path: Path) -> None:
    for n in range(3):
        ask(dev, summary=f"Refund order {n} for a customer with a long name " * 2)
    page = chromium.new_page(viewport={"width": 375, "height": 812})
    page.goto(f"{dev.url}/inbox")
    assert page.get_by_text("Refund order 0").count() >= 1
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(tmp_path / "inbox-375.png"), full_page=True)
    assert width <= 375, f"the inbox scrolls sideways at 375 px ({width} px wide)"
    page.close()


def test_the_edit_form_in_the_browser(dev: HttpDev, chromium: Any, tmp_path: Path) -> None:
    key = ask(dev)
    page = chromium.new_page(viewport={"width": 375, "height": 812})
    page.goto(f"{dev.url}/approvals/{key}")
    page.get_by_label("Your name").fill("alice")
    page.get_by_label("amount *").fill("12.5")  # a number, but the request's type wants an int
    page.get_by_role("button", name="Edit").click()
    error = page.locator("p.error[id^=error-]")
    assert error.count() == 1 and "Expected `int`" in error.inner_text()
    assert page.get_by_label("amount *").get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(tmp_path / "edit-refused.png"), full_page=True)
    page.get_by_label("amount *").fill("80")
    page.get_by_role("button", name="Edit").click()
    assert page.locator("#approval-status").inner_text() == "edited"
    page.screenshot(path=str(tmp_path / "edit-accepted.png"), full_page=True)
    approval = dev.http.get(f"/api/approvals/{key}").json()
    assert approval["decision"]["value"]["amount"] == 80
    page.close()


def test_a_page_follows_a_decision_made_elsewhere(dev: HttpDev, chromium: Any) -> None:
    key = ask(dev)
    page = chromium.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{dev.url}/approvals/{key}")
    decided = dev.http.post(
        f"/api/approvals/{key}/decision", json={"action": "reject", "by": "bob", "reason": "no"}
    )
    assert decided.status_code == 200
    page.locator("#approval-status", has_text="rejected").wait_for(timeout=15_000)
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.close()
