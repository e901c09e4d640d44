"""The RunPod test server holds to RunPod's own OpenAPI document, error answers included.

Every response below goes through openapi-core's response validator against
tests/data/runpod/runpod-rest-v2.openapi.json; a meta test proves the validator rejects a
broken pod and a broken problem body, so these tests can fail.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core.validation.response.exceptions import InvalidData, MissingData

from runctl_tui.testing.runpod_server import CAPACITY_DETAIL, RunPodTestServer, parse_rfc3339
from tests.runpod_fixture import API_KEY, as_openapi, openapi, runpod_server, validate

__all__ = ["runpod_server"]

RATE_MEMBER = re.compile(r'^"(minute|hour|day)";r=\d+;t=\d+$')
POLICY_MEMBER = re.compile(r'^"(minute|hour|day)";q=\d+;w=\d+$')
GPU = "NVIDIA GeForce RTX 4090"


class Api:
    """A sync client whose every response is validated against the contract."""

    def __init__(self, server: RunPodTestServer, key: str | None = API_KEY) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        self.http = httpx.Client(base_url=server.url, headers=headers, timeout=10)
        self.statuses: list[int] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        validate(response.request, response, response.content or None)
        self.statuses.append(response.status_code)
        if response.status_code != 401:
            assert_rate_headers(response)
        return response


def assert_rate_headers(response: httpx.Response) -> None:
    members = [m.strip() for m in response.headers["RateLimit"].split(",")]
    assert [m.split(";")[0] for m in members] == ['"minute"', '"hour"', '"day"']
    assert all(RATE_MEMBER.match(m) for m in members), members
    policies = [m.strip() for m in response.headers["RateLimit-Policy"].split(",")]
    assert all(POLICY_MEMBER.match(m) for m in policies), policies


@pytest.fixture
def api(runpod_server: RunPodTestServer) -> Iterator[Api]:
    client = Api(runpod_server)
    yield client
    client.http.close()


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "contract",
        "image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
        "gpu": {"id": GPU, "count": 1},
        "cloud": "SECURE",
        "disk": 20,
        "mounts": {"persistent": {"size": 20, "path": "/workspace"}},
        "ports": ["22/tcp"],
        "startSsh": True,
    }
    body.update(overrides)
    return body


def test_validator_rejects_responses_that_break_the_contract(api: Api) -> None:
    pod = api("POST", "/v2/pods", json=create_body()).json()
    request = httpx.Request("GET", f"http://x/v2/pods/{pod['id']}")
    broken = dict(pod)
    del broken["actions"]
    response = httpx.Response(200, json=broken, request=request)
    with pytest.raises((InvalidData, MissingData)):
        validate(request, response, response.content)
    wrong_status = dict(pod, status="SLEEPING")
    response = httpx.Response(200, json=wrong_status, request=request)
    with pytest.raises(InvalidData):
        validate(request, response, response.content)
    problem = httpx.Response(
        404,
        json={"title": "Not Found", "status": 404},
        headers={"content-type": "application/problem+json"},
        request=request,
    )
    with pytest.raises(InvalidData):
        validate(request, problem, problem.content)
    req, _ = as_openapi(request, problem, problem.content)
    assert openapi().spec is not None and req.host_url == "https://api.runpod.io"


def test_pod_lifecycle_every_answer_matches_the_contract(api: Api) -> None:
    assert api("GET", "/v2/pods").json() == {"pods": []}
    created = api("POST", "/v2/pods", json=create_body())
    assert created.status_code == 201
    pod = created.json()
    assert pod["status"] == "PROVISIONING"
    assert pod["actions"] == ["stop", "terminate"]
    assert pod["runtime"] is None and pod["startedAt"] is None
    assert pod["ssh"]["direct"] is None
    assert pod["cost"] == pytest.approx(0.69)
    pod_id = pod["id"]

    seen = [api("GET", f"/v2/pods/{pod_id}").json()["status"] for _ in range(5)]
    assert seen == ["PROVISIONING", "STARTING", "RUNNING", "RUNNING", "RUNNING"]
    running = api("GET", f"/v2/pods/{pod_id}").json()
    assert running["actions"] == ["stop", "restart", "terminate"]
    assert running["ssh"]["direct"]["port"] == 22
    assert running["runtime"]["gpus"][0]["util"] >= 0
    assert parse_rfc3339(running["startedAt"]) <= time.time() + 1

    listed = api("GET", "/v2/pods").json()["pods"]
    assert [p["id"] for p in listed] == [pod_id]

    stopped = api("POST", f"/v2/pods/{pod_id}/action", json={"action": "stop"})
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "EXITED"
    assert stopped.json()["cost"] == 0.0
    assert stopped.json()["actions"] == ["start", "terminate"]
    assert stopped.json()["ssh"]["direct"] is None

    conflict = api("POST", f"/v2/pods/{pod_id}/action", json={"action": "stop"})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert "valid actions: start, terminate" in conflict.json()["detail"]

    started = api("POST", f"/v2/pods/{pod_id}/action", json={"action": "start"})
    assert started.json()["status"] == "STARTING"
    assert api("POST", f"/v2/pods/{pod_id}/action", json={"action": "restart"}).status_code == 409
    while api("GET", f"/v2/pods/{pod_id}").json()["status"] != "RUNNING":
        pass
    assert api("POST", f"/v2/pods/{pod_id}/action", json={"action": "restart"}).status_code == 200

    bad = api("POST", f"/v2/pods/{pod_id}/action", json={"action": "pause"})
    assert bad.status_code == 422 and bad.json()["errors"]

    gone = api("POST", f"/v2/pods/{pod_id}/action", json={"action": "terminate"})
    assert gone.status_code == 204 and gone.content == b""
    terminated = api("GET", f"/v2/pods/{pod_id}").json()
    assert terminated["status"] == "TERMINATED" and terminated["actions"] == []
    assert api("GET", "/v2/pods").json()["pods"] == []
    assert api("DELETE", f"/v2/pods/{pod_id}").status_code == 404
    assert api("POST", f"/v2/pods/{pod_id}/action", json={"action": "start"}).status_code == 404


def test_delete_terminates(api: Api) -> None:
    pod_id = api("POST", "/v2/pods", json=create_body()).json()["id"]
    response = api("DELETE", f"/v2/pods/{pod_id}")
    assert response.status_code == 204
    assert api("GET", f"/v2/pods/{pod_id}").json()["status"] == "TERMINATED"


def test_create_refusals(api: Api, runpod_server: RunPodTestServer) -> None:
    invalid = api("POST", "/v2/pods", json=create_body(bogus=1))
    assert invalid.status_code == 422
    assert any("bogus" in e for e in invalid.json()["errors"])
    no_name = api("POST", "/v2/pods", json={"image": "x", "gpu": {"id": GPU}})
    assert no_name.status_code == 422
    too_many = api("POST", "/v2/pods", json=create_body(gpu={"id": GPU, "count": 9}))
    assert too_many.status_code == 400 and "maximum" in too_many.json()["detail"]
    unknown = api("POST", "/v2/pods", json=create_body(gpu={"id": "NVIDIA B9000"}))
    assert unknown.status_code == 400
    runpod_server.set_stock(GPU, "NONE", cloud="SECURE")
    full = api("POST", "/v2/pods", json=create_body())
    assert full.status_code == 400 and full.json()["detail"] == CAPACITY_DETAIL
    elsewhere = api("POST", "/v2/pods", json=create_body(cloud="COMMUNITY"))
    assert elsewhere.status_code == 201 and elsewhere.json()["dataCenterId"] == "US-TX-3"
    assert elsewhere.json()["cost"] == pytest.approx(0.34)
    placed = api(
        "POST",
        "/v2/pods",
        json=create_body(gpu={"id": "NVIDIA RTX A6000"}, dataCenterIds=["US-TX-3"]),
    )
    assert placed.status_code == 201 and placed.json()["dataCenterId"] == "US-TX-3"
    not_there = api(
        "POST",
        "/v2/pods",
        json=create_body(gpu={"id": "NVIDIA RTX A6000"}, dataCenterIds=["EU-RO-1"]),
    )
    assert not_there.status_code == 400
    assert (
        api(
            "POST", "/v2/pods", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer rp_wrong"}, "invalid api key"),
        ({"Authorization": "Basic abc"}, "malformed bearer token"),
    ],
)
def test_unauthorized(
    runpod_server: RunPodTestServer, headers: dict[str, str], detail: str
) -> None:
    api = Api(runpod_server, key=None)
    response = api("GET", "/v2/pods", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"title": "Unauthorized", "status": 401, "detail": detail}
    assert "RateLimit" not in response.headers


def test_not_found_and_method_not_allowed(api: Api) -> None:
    missing = api("GET", "/v2/pods/doesnotexist")
    assert missing.status_code == 404 and missing.json()["detail"] == "pod not found"
    assert api("GET", "/v2/pods/doesnotexist/logs").status_code == 404
    patch = api("PATCH", "/v2/pods/doesnotexist", json={"name": "x"})
    assert patch.status_code == 405
    assert "DELETE" in patch.headers["Allow"] and "GET" in patch.headers["Allow"]


def test_rate_limits(runpod_server: RunPodTestServer, api: Api) -> None:
    runpod_server.rate_limit_next(1, retry_after=7)
    limited = api("GET", "/v2/pods")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert '"minute";r=0;t=7' in limited.headers["RateLimit"]
    assert limited.json()["title"] == "Too Many Requests"
    assert api("GET", "/v2/pods").status_code == 200

    tight = RunPodTestServer(api_key=API_KEY, quota_per_minute=3).start()
    try:
        client = Api(tight)
        remaining = [client("GET", "/v2/pods").headers["RateLimit"].split(";")[1] for _ in range(3)]
        assert remaining == ["r=2", "r=1", "r=0"]
        over = client("GET", "/v2/pods")
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        client.http.close()
    finally:
        tight.stop()


def test_server_faults_answer_with_problem_bodies(
    runpod_server: RunPodTestServer, api: Api
) -> None:
    runpod_server.fail_next(2, status=503)
    first, second = api("GET", "/v2/pods"), api("GET", "/v2/catalog/gpus")
    assert (first.status_code, second.status_code) == (503, 503)
    assert first.json()["title"] == "Service Unavailable"
    assert api("GET", "/v2/pods").status_code == 200
    runpod_server.fail_next(1, status=500, path="/v2/billing")
    assert api("GET", "/v2/pods").status_code == 200
    assert api("GET", "/v2/billing/pods").status_code == 500
    runpod_server.slow_next(1, 0.3)
    started = time.monotonic()
    assert api("GET", "/v2/pods").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_catalog(api: Api, runpod_server: RunPodTestServer) -> None:
    plain = api("GET", "/v2/catalog/gpus").json()["gpus"]
    assert GPU in [g["id"] for g in plain]
    assert all("availability" not in g for g in plain)
    stocked = api(
        "GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"}
    ).json()["gpus"]
    rtx = next(g for g in stocked if g["id"] == GPU)
    assert rtx["availability"] == "HIGH"
    assert [d["id"] for d in rtx["dataCenters"]] == ["US-KS-2", "EU-RO-1"]
    eight = api(
        "GET",
        "/v2/catalog/gpus",
        params={"include": "AVAILABILITY", "product": "POD", "count": "8", "cloud": "COMMUNITY"},
    ).json()["gpus"]
    assert all(g["availability"] == "NONE" and "dataCenters" not in g for g in eight)
    assert api("GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400
    assert api("GET", "/v2/catalog/gpus", params={"product": "POD"}).status_code == 400
    assert api("GET", "/v2/catalog/gpus", params={"count": "2"}).status_code == 400
    runpod_server.set_stock(GPU, "NONE")
    after = api(
        "GET", "/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"}
    ).json()["gpus"]
    assert next(g for g in after if g["id"] == GPU)["availability"] == "NONE"


def test_billing(api: Api, runpod_server: RunPodTestServer) -> None:
    pod = runpod_server.add_pod(name="billed")
    runpod_server.add_pod(name="other")
    time.sleep(0.05)  # Billing accrues with wall-clock time while the pods run.
    everything = api("GET", "/v2/billing/pods", params={"lastN": "2"}).json()
    assert everything["metadata"]["uniquePodCount"] == 2
    one = api("GET", "/v2/billing/pods", params={"podId": pod.id, "bucketSize": "hour"}).json()
    assert {r["podId"] for r in one["records"]} == {pod.id}
    assert one["metadata"]["totals"]["totalAmount"] > 0
    assert one["metadata"]["query"]["bucketSize"] == "hour"
    both = api(
        "GET", "/v2/billing/pods", params={"lastN": "1", "startTime": "2026-01-01T00:00:00Z"}
    )
    assert both.status_code == 400
    assert api("GET", "/v2/billing/pods", params={"bucketSize": "decade"}).status_code == 422


def test_ssh_keys(api: Api) -> None:
    keys = api("GET", "/v2/account/ssh-keys").json()["keys"]
    assert len(keys) == 1 and keys[0].startswith("ssh-ed25519 ")
    new = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther other@host"]
    assert api("PUT", "/v2/account/ssh-keys", json={"keys": new}).json() == {"keys": new}
    assert api("PUT", "/v2/account/ssh-keys", json={"keys": ["not a key"]}).status_code == 422


def read_events(response: httpx.Response, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Read `count` events, then validate the stream's answer with the text read so far."""
    events: list[tuple[str, dict[str, Any]]] = []
    event_id = ""
    raw: list[str] = []
    for line in response.iter_lines():
        raw.append(line)
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, json.loads(line[6:])))
            if len(events) == count:
                break
    validate(response.request, response, ("\n".join(raw) + "\n").encode())
    return events


def test_log_stream_sse_format_and_resume(runpod_server: RunPodTestServer, api: Api) -> None:
    pod = runpod_server.add_pod(name="logs")
    for i in range(5):
        runpod_server.add_log(pod.id, f"step {i}")
    path = f"/v2/pods/{pod.id}/logs"
    with api.http.stream("GET", path, params={"source": "container", "tail": "3"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert_rate_headers(response)
        events = read_events(response, 3)
    assert [e["line"] for _, e in events] == ["step 2", "step 3", "step 4"]
    for event_id, data in events:
        assert set(data) == {"ts", "source", "line"} and data["source"] == "container"
        assert event_id.split("/")[0] == data["ts"]
        parse_rfc3339(data["ts"])
    resume_from = events[0][0]
    with api.http.stream("GET", path, headers={"Last-Event-ID": resume_from}) as response:
        assert [e["line"] for _, e in read_events(response, 2)] == ["step 3", "step 4"]

    runpod_server.drop_next_stream_after(1)
    with (
        api.http.stream("GET", path, params={"source": "container", "tail": "2"}) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        read_events(response, 2)
    with api.http.stream("GET", path, params={"tail": "0"}) as response:
        runpod_server.add_log(pod.id, "live line")
        assert [e["line"] for _, e in read_events(response, 1)] == ["live line"]
    bad = api("GET", path, params={"tail": "9999"})
    assert bad.status_code == 422
