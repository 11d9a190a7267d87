"""Property-based tests of the JSON API against its own OpenAPI document.

Schemathesis reads `GET /api/openapi.json` from a real `tako dev`, generates
requests for every operation from the document's schemas (valid ones and
invalid ones), sends them over real HTTP, and checks each reply: never a 5xx,
its status documented for the operation, its body matching the schema
documented for that status. Path parameters are sometimes the ids of real
runs and approvals, and start bodies sometimes name real workflows, so the
requests reach runs and approvals and not only 404s.

Every check schemathesis has runs but one: that every request the document allows
is accepted. Two rules cannot be said in the document: a duration such as
`"99999w"` matches its pattern, yet takod refuses a delay over a century; and an
edited value must match the `type=` of its own approval request.

The streams never end, so they are left out of the generated calls; the status
of their first response is checked on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
import schemathesis
from http_harness import HttpDev, eventually, http_dev
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from tako.http._openapi import openapi_document

EXAMPLES = 50  # per operation: the whole module stays well under a minute on two cores
WORKFLOWS = ["echo", "waiter", "boom", "refund"]


class Live:
    """The server, its credentials, and the real ids the generated requests may use.

    Requests go as `alice` (every scope but admin; an approver of the refunds), as a
    reader (403 for what changes anything), with a token that matches none (401), or
    with no credentials (401: the app has tokens)."""

    def __init__(self, dev: HttpDev) -> None:
        self.dev = dev
        alice = dev.token("alice", "read", "start", "signal", "decide")
        reader = dev.token("viewer", "read")
        eventually(lambda: dev.http.get("/api/runs").status_code == 401, what="tokens to count")
        self.alice = dev.as_(alice)
        self.credentials = st.sampled_from(
            [{"Authorization": f"Bearer {t}"} for t in (alice, alice, alice, reader, "tako_no")]
            + [{}]
        )
        self.runs: list[str] = []
        for n, workflow in enumerate([*WORKFLOWS, "refund", "refund"]):
            body = {"workflow": workflow, "payload": None, "run_id": f"{workflow}-{n}"}
            self.runs.append(self.alice.post("/api/runs", json=body).json()["run_id"])
        for run_id in self.runs:
            dev.parked(run_id)
        self.keys = [f"{r}:manager" for r in self.runs if r.startswith("refund-")]
        self.document: dict[str, Any] = self.alice.get("/api/openapi.json").json()

    def real(self, name: str) -> list[str]:
        return {"run_id": self.runs, "key": self.keys, "event": ["go"]}.get(name, [])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("fuzz") / "shop"
    with http_dev(root, limit='[runs]\nmax_payload = "2KiB"') as dev:
        yield Live(dev)


@pytest.fixture(scope="module")
def api(live: Live) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.dev.url}/api/openapi.json")


# The document is generated from types, not from the running server: its operations
# are known when the tests are collected.
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, methods in openapi_document()["paths"].items()
    for method in methods
    if not path.endswith("/stream")
]


def with_real_ids(live: Live, case: schemathesis.Case, data: st.DataObject) -> None:
    """Sometimes replace generated ids by real ones, and a start's workflow by a real
    one, so the requests reach runs and approvals and not only 404s."""
    for name in case.path_parameters or {}:
        if (ids := live.real(name)) and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(ids), label=name)
    body = case.body
    starts = isinstance(body, dict) and isinstance(body.get("workflow"), str)
    if starts and data.draw(st.booleans(), label="real workflow"):
        body["workflow"] = data.draw(st.sampled_from(WORKFLOWS), label="workflow")


@pytest.mark.parametrize("label", OPERATIONS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_every_reply_matches_the_document(
    live: Live, api: schemathesis.BaseSchema, label: str, data: st.DataObject
) -> None:
    operation = api.find_operation_by_label(label)
    assert operation is not None, label
    mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
    case = data.draw(operation.as_strategy(generation_mode=mode))
    if mode is GenerationMode.POSITIVE:  # a negative case stays as invalid as it was made
        with_real_ids(live, case, data)
    headers = data.draw(live.credentials, label="credentials")
    case.call_and_validate(
        headers=headers, timeout=30, excluded_checks=[checks.positive_data_acceptance]
    )


def test_the_first_reply_of_a_stream_is_documented(live: Live) -> None:
    """A stream of a real object answers 200 with events; of an unknown one, a documented
    error with a body that matches its schema."""
    paths, components = live.document["paths"], live.document["components"]
    for template, name in (("/api/runs/{run_id}/stream", "run_id"),
                           ("/api/approvals/{key}/stream", "key")):  # fmt: skip
        responses = paths[template]["get"]["responses"]
        for value in [*live.real(name), "nope", "no:such", "ü ?#", "%2F"]:
            url = template.replace("{" + name + "}", quote(value, safe=""))
            with live.alice.stream("GET", url) as reply:
                status = str(reply.status_code)
                assert status in responses, (url, status)
                content = responses[status]["content"]
                media = reply.headers["content-type"].split(";")[0]
                assert media in content, (url, media)
                if media == "application/json":
                    reply.read()
                    documented = {**content[media]["schema"], "components": components}
                    jsonschema_rs.validator_for(documented).validate(reply.json())
                else:
                    first = next(reply.iter_lines())
                    assert first.startswith("event: "), (url, first)


def test_an_undocumented_method_is_405_with_allow(live: Live) -> None:
    """Every path answers a method it does not document with 405, naming the ones it takes."""
    for template, operations in live.document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        documented = {m.upper() for m in operations}
        reply = live.alice.request("DELETE", path)
        assert reply.status_code == 405, (path, reply.status_code)
        assert reply.json()["error"]["code"] == "invalid"
        allowed = {m.strip() for m in reply.headers.get("allow", "").split(",")}
        assert documented <= allowed, (path, allowed)


REFUSED = [  # bodies takod refuses with 400, each for a rule the document states
    ("/api/runs", {"workflow": ""}),
    ("/api/runs", {"workflow": "echo", "delay": "soon"}),
    ("/api/runs", {"workflow": "echo", "delay": 1e300}),
    ("/api/runs/{run_id}/events", {"name": ""}),
    ("/api/signals/{event}", {"ttl": -1}),
    ("/api/runs/{run_id}/cancel", {"reason": 1}),
    ("/api/approvals/{key}/decision", {"action": "approve", "by": ""}),
    ("/api/approvals/{key}/decision", {"action": "edit"}),
    ("/api/approvals/{key}/decision", {"action": "reject"}),
    ("/api/approvals/{key}/decision", {"action": "reject", "reason": ""}),
]


@pytest.mark.parametrize(("template", "body"), REFUSED)
def test_what_the_api_refuses_the_document_refuses(
    live: Live, template: str, body: dict[str, Any]
) -> None:
    """The request schemas are as strict as the API: a body it refuses with 400 does not
    match the document either (schemathesis generates from the document, so a looser
    one hides what clients may not send)."""
    operation = live.document["paths"][template]["post"]
    documented = {**operation["requestBody"]["content"]["application/json"]["schema"]}
    assert not jsonschema_rs.validator_for(
        {**documented, "components": live.document["components"]}
    ).is_valid(body), body
    values = {"run_id": live.runs[1], "key": live.keys[-1], "event": "go"}
    path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
    reply = live.alice.post(path, json=body)
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid"), reply.text
