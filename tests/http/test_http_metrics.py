"""`GET /metrics` over real HTTP from a real `tako dev`: Prometheus text that moves with
the runs, behind the `read` scope once tokens exist; and `POST /api/runs` carrying a
`traceparent` header."""

from __future__ import annotations

from pathlib import Path

from http_harness import eventually, http_dev
from prometheus_client.parser import text_string_to_metric_families

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def samples(text: str) -> dict[str, float]:
    return {
        s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_move_with_runs_and_need_the_read_scope_once_tokens_exist(
    tmp_path: Path,
) -> None:
    with http_dev(tmp_path / "shop") as dev:
        before = dev.http.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert samples(before.text)["tako_runs_started_total"] == 0

        for header in (PARENT, "not a trace context"):  # a bad header is ignored, not an error
            started = dev.http.post(
                "/api/runs",
                json={"workflow": "echo", "payload": 1},
                headers={"traceparent": header},
            )
            assert started.status_code == 201, started.text
            dev.parked(started.json()["run_id"])
        after = samples(dev.http.get("/metrics").text)
        assert after["tako_runs_started_total"] == 2
        assert after["tako_runs|status=completed|workflow=echo"] == 2
        assert after["tako_step_seconds_count"] == 2

        reader, signaller = dev.token("scraper", "read"), dev.token("bot", "signal")
        # tokens take effect within a second: until then the app may still allow all
        eventually(lambda: dev.http.get("/metrics").status_code == 401, what="a 401")
        refused = dev.as_(signaller).get("/metrics")
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
        assert dev.as_(reader).get("/metrics").status_code == 200
