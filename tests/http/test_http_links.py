"""Approval links and the pages: a GET decides nothing, only the page's own POST does, as
that approver, bound to the value shown; bad links say why; what users typed renders as text;
forms from other sites are refused; streams see each change."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_harness import HttpDev, http_dev

HOSTILE = "<script>alert('x')</script> \"quoted\" & 'single'"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpDev]:
    with http_dev(tmp_path_factory.mktemp("links") / "shop") as server:
        yield server


def ask(dev: HttpDev, **payload: Any) -> str:
    """Start a refund that waits for approval; its approval key."""
    run_id = dev.http.post("/api/runs", json={"workflow": "refund", "payload": payload}).json()[
        "run_id"
    ]
    assert dev.parked(run_id)["status"] == "waiting"
    return f"{run_id}:manager"


def links(dev: HttpDev, key: str) -> dict[str, dict[str, str]]:
    shown = dev.tako("approvals", "show", key, "--links", "--json")
    assert shown.code == 0, shown.err
    found: dict[str, dict[str, str]] = shown.json()["links"]
    return found


def form_fields(html: str) -> dict[str, str]:
    """The hidden inputs of the decision form (csrf, seen)."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


def browser() -> httpx.Client:
    """A client that keeps cookies, as a browser does."""
    return httpx.Client(timeout=30, follow_redirects=False)


def test_opening_a_link_decides_nothing(dev: HttpDev) -> None:
    key = ask(dev)
    alice = links(dev, key)["alice"]
    with browser() as b:
        for url in (alice["view"], alice["approve"], alice["reject"]):
            page = b.get(url)  # what a mail scanner or a chat preview does
            assert page.status_code == 200 and "Approve" in page.text
    assert dev.http.get(f"/api/approvals/{key}").json()["status"] == "pending"


def test_the_pages_post_decides_as_the_links_approver(dev: HttpDev) -> None:
    key = ask(dev)
    bob = links(dev, key)["bob"]
    with browser() as b:
        page = b.get(bob["approve"])
        hidden = form_fields(page.text)
        done = b.post(bob["view"], data={**hidden, "action": "approve"})
        assert done.status_code == 303
        after = b.get(bob["view"])
        assert "approved by bob" in after.text and 'value="approve"' not in after.text
    approval = dev.http.get(f"/api/approvals/{key}").json()
    assert (approval["status"], approval["decision"]["by"]) == ("approved", "bob")


def test_a_link_bound_to_an_edited_value_is_refused_and_shows_the_new_one(dev: HttpDev) -> None:
    key = ask(dev, required=2)
    alice, bob = links(dev, key)["alice"], links(dev, key)["bob"]
    with browser() as b:
        hidden = form_fields(b.get(bob["view"]).text)  # bob sees amount 120
        edited = {"amount": 90, "note": "partial"}
        r = dev.http.post(
            f"/api/approvals/{key}/decision",
            json={"action": "edit", "by": "alice", "value": edited},
        )
        assert r.status_code == 200, r.text
        refused = b.post(bob["view"], data={**hidden, "action": "approve"})
        assert refused.status_code == 409
        assert "changed" in refused.text and "partial" in refused.text
    assert dev.http.get(f"/api/approvals/{key}").json()["status"] == "pending"
    del alice


def test_tampered_expired_and_decided_links(dev: HttpDev) -> None:
    key = ask(dev)
    alice = links(dev, key)["alice"]["view"]
    base, token = alice.rsplit("/a/", 1)
    body, mac = token.split(".", 1)
    tampered = httpx.get(f"{base}/a/{body}.{mac[:-2]}AA")
    assert tampered.status_code == 403 and "not valid" in tampered.text
    other = links(dev, ask(dev))["alice"]["view"].rsplit(".", 1)[1]
    spliced = httpx.get(f"{base}/a/{body}.{other}")  # another request's signature
    assert spliced.status_code == 403
    with browser() as b:
        hidden = form_fields(b.get(alice).text)
        b.post(alice, data={**hidden, "action": "reject", "reason": "no"})
        decided = b.get(alice)
        assert decided.status_code == 200 and "rejected by alice" in decided.text
        assert 'value="approve"' not in decided.text  # no buttons on a decided request
        again = b.post(alice, data={**hidden, "action": "approve"})
        assert again.status_code == 409


def test_what_users_typed_renders_as_text_in_every_page(dev: HttpDev) -> None:
    key = ask(dev, summary=HOSTILE, note=HOSTILE)
    run_id = key.split(":")[0]
    dev.http.post(f"/api/runs/{run_id}/cancel", json={"reason": HOSTILE})
    key2 = ask(dev, summary=HOSTILE, note=HOSTILE)
    pages = [
        dev.http.get("/").text,
        dev.http.get(f"/runs/{run_id}").text,
        dev.http.get("/inbox").text,
        dev.http.get(f"/approvals/{key2}").text,
        httpx.get(links(dev, key2)["alice"]["view"]).text,
    ]
    for html in pages:
        assert "<script>alert" not in html
    assert any("&lt;script&gt;alert(" in html for html in pages[2:])


def test_a_form_from_another_site_is_refused(dev: HttpDev) -> None:
    key = ask(dev)
    view = links(dev, key)["alice"]["view"]
    with browser() as b:
        hidden = form_fields(b.get(view).text)
        forged = httpx.post(view, data={"action": "approve", "seen": hidden["seen"]})
        assert forged.status_code == 403  # no cookie, no token
        wrong = b.post(view, data={**hidden, "csrf": "x" * 32, "action": "approve"})
        assert wrong.status_code == 403
        elsewhere = b.post(
            view, data={**hidden, "action": "approve"}, headers={"Origin": "https://evil.example"}
        )
        assert elsewhere.status_code == 403
        started = httpx.post(f"{dev.url}/runs", data={"workflow": "echo", "payload": "{}"})
        assert started.status_code == 403
    assert dev.http.get(f"/api/approvals/{key}").json()["status"] == "pending"


def test_the_edit_form_refuses_a_bad_value_next_to_its_field(dev: HttpDev) -> None:
    key = ask(dev)
    page = f"{dev.url}/approvals/{key}"
    with browser() as b:
        hidden = form_fields(b.get(page).text)
        form = {**hidden, "action": "edit", "by": "alice", "field:amount": "12x", "field:note": ""}
        refused = b.post(page, data=form)
        assert refused.status_code == 400 and "is not a number" in refused.text
        good = b.post(page, data={**form, "field:amount": "99", "field:note": "ok"})
        assert good.status_code == 303
    approval = dev.http.get(f"/api/approvals/{key}").json()
    assert (approval["status"], approval["decision"]["value"]) == (
        "edited",
        {"amount": 99, "note": "ok"},
    )


def test_a_stream_sees_the_pending_state_then_the_decision(dev: HttpDev) -> None:
    key = ask(dev)
    events: list[dict[str, Any]] = []
    seen_first = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{dev.url}/api/approvals/{key}/stream", timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    seen_first.set()
                    if len(events) >= 2 and events[-1]["status"] != "pending":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert seen_first.wait(15)
    assert events[0]["status"] == "pending"
    decided_at = time.monotonic()
    dev.http.post(f"/api/approvals/{key}/decision", json={"action": "approve", "by": "alice"})
    listener.join(15)
    assert not listener.is_alive(), events
    assert events[-1]["status"] == "approved"
    assert time.monotonic() - decided_at < 10  # pushed, not found by a slow poll


def test_a_link_for_anyone_asks_who_decides(dev: HttpDev) -> None:
    key = ask(dev, approvers=None)
    anyone = links(dev, key)
    assert list(anyone) == ["*"]
    view = anyone["*"]["view"]
    with browser() as b:
        page = b.get(view)
        assert "Your name" in page.text
        hidden = form_fields(page.text)
        nameless = b.post(view, data={**hidden, "action": "approve"})
        assert nameless.status_code == 403 and "say who you are" in nameless.text
        named = b.post(view, data={**hidden, "action": "approve", "by": "dana"})
        assert named.status_code == 303
    assert dev.http.get(f"/api/approvals/{key}").json()["decision"]["by"] == "dana"
