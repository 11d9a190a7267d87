"""`tako tokens create|list|revoke` and `tako approvals show --links`, as a user runs them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

import tako
from tako._protocol import GetAccess
from tako._replies import AccessReply
from tests.cli.cli_harness import DevServer, make_app, short_data_dir
from tests.cli.test_cli_approvals import FLOWS, parked, start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    app = make_app(tmp_path_factory.mktemp("tok") / "tokshop", {"flows.py": FLOWS})
    data_dir = short_data_dir()
    dev = DevServer(app, data_dir)
    try:
        yield dev
    finally:
        dev.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_create_prints_the_token_once_list_never_shows_it_revoke_is_at_once(
    server: DevServer,
) -> None:
    made = server.tako("tokens", "create", "deploy-bot", "--scope", "start", "--scope", "read")
    assert made.code == 0, made.err
    token = made.out.strip()
    assert token.startswith("tako_") and "\n" not in token
    assert "shown this once" in made.err
    who = server.client().call(GetAccess(token=token), AccessReply)
    assert (who.name, who.scopes) == ("deploy-bot", ["start", "read"])

    as_json = server.tako("tokens", "create", "ci", "--scope", "admin", "--json")
    assert as_json.code == 0, as_json.err
    assert set(as_json.json()) == {"name", "token", "scopes"}
    assert as_json.json()["scopes"] == ["admin"]

    listed = server.tako("tokens", "list")
    assert listed.code == 0 and token not in listed.out
    assert [line.split()[:2] for line in listed.out.splitlines()] == [
        ["NAME", "SCOPES"],
        ["ci", "admin"],
        ["deploy-bot", "start,read"],
    ]
    entries = server.tako("tokens", "list", "--json").json()
    assert [(t["name"], sorted(t)) for t in entries] == [
        ("ci", ["created_at", "name", "scopes"]),
        ("deploy-bot", ["created_at", "name", "scopes"]),
    ]

    again = server.tako("tokens", "create", "ci", "--scope", "read")
    assert again.code == 1 and "revoke it first" in again.err
    bad = server.tako("tokens", "create", "x", "--scope", "root")
    assert bad.code == 2 and "root" in bad.err
    none = server.tako("tokens", "create", "x")
    assert none.code == 2 and "--scope" in none.err

    revoked = server.tako("tokens", "revoke", "deploy-bot", "--json")
    assert revoked.code == 0 and revoked.json() == {"name": "deploy-bot", "revoked": True}
    with pytest.raises(tako.Unauthorized, match="not valid"):  # at once
        server.client().call(GetAccess(token=token), AccessReply)
    unknown = server.tako("tokens", "revoke", "deploy-bot")
    assert unknown.code == 1 and "no token named 'deploy-bot'" in unknown.err
    assert server.tako("tokens", "revoke", "ci").code == 0
    assert "no tokens" in server.tako("tokens").out


def test_approvals_show_links_prints_each_approvers_links(server: DevServer) -> None:
    key = parked(server, start(server, "refund", {"order": 5, "amount": 9}, "links-1"))
    shown = server.tako("approvals", "show", key, "--links")
    assert shown.code == 0, shown.err
    made = server.client().approval_links(key)
    assert set(made) == {"alice", "bob"}
    for approver, urls in made.items():
        assert f"links for {approver}:" in shown.out
        for action in ("view", "approve", "reject"):
            assert f"  {action:<8} {urls[action]}" in shown.out

    as_json = server.tako("approvals", "show", key, "--links", "--json").json()
    assert as_json["links"] == made and as_json["key"] == key
    assert "links" not in server.tako("approvals", "show", key, "--json").json()

    payload = {"order": 6, "amount": 9, "approvers": None}
    anyone = parked(server, start(server, "refund", payload, "links-2"))
    assert "links for anyone:" in server.tako("approvals", "show", anyone, "--links").out
