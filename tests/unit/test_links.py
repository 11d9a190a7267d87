"""Signed approval links (takod/links.py): what a link proves, and how a bad one is told."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tako._errors import LinkExpired, LinkTampered
from tako.takod import links

SECRET = b"k" * 32
NOW = 1_700_000_000_000


def test_a_signed_link_verifies_to_its_claims() -> None:
    token = links.sign(SECRET, "r_1:manager", "alice", NOW + 60_000)
    assert links.verify(SECRET, token, NOW) == ("r_1:manager", "alice", NOW + 60_000)
    assert "/" not in token and "+" not in token and "=" not in token  # fits in a URL path


def test_an_expired_link_is_told_apart_from_a_tampered_one() -> None:
    token = links.sign(SECRET, "r_1:manager", "alice", NOW + 60_000)
    with pytest.raises(LinkExpired, match="r_1:manager"):
        links.verify(SECRET, token, NOW + 60_000)
    with pytest.raises(LinkTampered):
        links.verify(b"another key", token, NOW)


def _forge(token: str, **changes: object) -> str:
    body, _, mac = token.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{forged}.{mac}"


@pytest.mark.parametrize(
    "change",
    [
        {"a": "mallory"},  # another approver
        {"k": "r_2:manager"},  # another request
        {"e": NOW + 10**12},  # a later expiry
    ],
)
def test_changing_any_claim_breaks_the_signature(change: dict[str, object]) -> None:
    token = links.sign(SECRET, "r_1:manager", "alice", NOW + 60_000)
    with pytest.raises(LinkTampered):
        links.verify(SECRET, _forge(token, **change), NOW)


def test_a_forged_link_to_an_expired_time_reads_tampered_not_expired() -> None:
    token = links.sign(SECRET, "r_1:manager", "alice", NOW + 60_000)
    with pytest.raises(LinkTampered):  # "expired" would confirm the claims were ours
        links.verify(SECRET, _forge(token, e=NOW - 1), NOW)


@pytest.mark.parametrize(
    "token", ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.@@@", "eyJ9.AAAA", "é.é"]
)
def test_malformed_tokens_are_tampered(token: str) -> None:
    with pytest.raises(LinkTampered):
        links.verify(SECRET, token, NOW)


def test_the_mac_is_compared_in_constant_time() -> None:
    source = Path(links.__file__).read_text()
    assert "hmac.compare_digest(" in source
    assert "mac ==" not in source and "== mac" not in source


def test_expiry_is_the_deadline_else_thirty_days() -> None:
    assert links.expiry(NOW + 5, NOW) == NOW + 5
    assert links.expiry(None, NOW) == NOW + 30 * 86400 * 1000


def test_links_for_each_approver_or_anyone() -> None:
    made = links.links_for(SECRET, "https://x.test/", "r_1:m", ["alice", "bob"], None, NOW)
    assert set(made) == {"alice", "bob"}
    view = made["alice"]["view"]
    assert view.startswith("https://x.test/a/")
    assert made["alice"]["approve"] == view + "?action=approve"
    assert made["alice"]["reject"] == view + "?action=reject"
    token = view.rsplit("/", 1)[1]
    assert links.verify(SECRET, token, NOW).approver == "alice"
    anyone = links.links_for(SECRET, "http://127.0.0.1:8787", "r_1:m", None, NOW + 9, NOW)
    assert list(anyone) == ["*"]
    assert links.verify(SECRET, anyone["*"]["view"].rsplit("/", 1)[1], NOW).expires_at == NOW + 9
