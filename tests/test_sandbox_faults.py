"""Injected faults, as a client sees them, and the /_sandbox control endpoints."""

from __future__ import annotations

import json

import httpx
import pytest

from kling_tui.sandbox import DEFAULT_API_KEY

GEN = "/v1/images/generations"


@pytest.fixture
def http(sandbox):
    with httpx.Client(
        base_url=sandbox.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}, timeout=10
    ) as c:
        yield c


def test_error_fault_answers_the_code_with_its_status_and_creates_nothing(sandbox, http):
    sandbox.state.faults.add(endpoint="create", kind="error", code=5000, times=1)
    answer = http.post(GEN, json={"prompt": "x"})
    body = answer.json()
    assert (answer.status_code, body["code"]) == (500, 5000)
    assert "data" not in body
    assert http.post(GEN, json={"prompt": "x"}).status_code == 200  # times=1: used up
    counters = sandbox.state.counters()
    assert (counters["faults"], counters["tasks_created"], counters["create"]) == (1, 1, 2)


def test_wildcard_fault_hits_every_endpoint(sandbox, http):
    sandbox.state.faults.add(endpoint="*", kind="error", code=5001)
    assert http.get(GEN).status_code == 503
    assert http.get(f"{GEN}/123").status_code == 503
    assert http.get("/account/costs", params={"start_time": 0, "end_time": 1}).json()["code"] == 5001
    sandbox.state.faults.clear()
    assert http.get(GEN).status_code == 200


def test_latency_fault_makes_the_client_time_out(sandbox, http):
    sandbox.state.faults.add(endpoint="list", kind="latency", seconds=0.6, times=1)
    with pytest.raises(httpx.ReadTimeout):
        http.get(GEN, timeout=0.1)
    assert http.get(GEN).status_code == 200


def test_drop_fault_closes_the_connection_mid_answer(sandbox, http):
    sandbox.state.faults.add(endpoint="create", kind="drop", times=1)
    with pytest.raises(httpx.TransportError):
        http.post(GEN, json={"prompt": "x", "external_task_id": "dropped-1"})
    assert http.get(f"{GEN}/dropped-1").json()["code"] == 1201  # nothing was created
    assert http.post(GEN, json={"prompt": "x"}).status_code == 200


def test_created_5002_creates_the_task_but_answers_a_timeout(sandbox, http):
    sandbox.state.faults.add(endpoint="*", kind="created_5002", times=1)
    assert http.get(GEN).status_code == 200  # not a create: untouched
    answer = http.post(GEN, json={"prompt": "x", "external_task_id": "ambiguous-1"})
    body = answer.json()
    assert (answer.status_code, body["code"]) == (504, 5002)
    assert "data" not in body
    found = http.get(f"{GEN}/ambiguous-1").json()["data"]
    assert found["task_info"] == {"external_task_id": "ambiguous-1"}
    assert sandbox.state.counters()["tasks_created"] == 1


def test_malformed_fault_sends_truncated_json(sandbox, http):
    sandbox.state.faults.add(endpoint="get", kind="malformed")
    task_id = http.post(GEN, json={"prompt": "x"}).json()["data"]["task_id"]
    answer = http.get(f"{GEN}/{task_id}")
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_rate_and_times_limit_firings(sandbox, http):
    sandbox.state.faults.add(endpoint="list", kind="error", code=5001, rate=0.5)
    statuses = [http.get(GEN).status_code for _ in range(30)]
    assert 0 < statuses.count(503) < 30
    assert set(statuses) == {200, 503}
    sandbox.state.faults.clear()
    sandbox.state.faults.add(endpoint="get", kind="error", code=5000, times=2)
    assert [http.get(f"{GEN}/1").status_code for _ in range(3)] == [500, 500, 400]


@pytest.mark.parametrize(
    "fields",
    [{"endpoint": "upload"}, {"kind": "explode"}, {"code": 42}, {"rate": 2}, {"kind": "latency"}],
)
def test_impossible_faults_are_refused(sandbox, fields):
    with pytest.raises(ValueError):
        sandbox.state.faults.add(**fields)


def test_control_endpoints_drive_faults_clock_and_counters(sandbox, http):
    faults = [{"endpoint": "create", "kind": "error", "code": 1303, "times": 1}]
    answer = httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=faults)
    assert answer.status_code == 200
    assert answer.json()["faults"][0]["code"] == 1303
    assert http.post(GEN, json={"prompt": "x"}).status_code == 429
    assert httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=[{"kind": "nope"}]).status_code == 400

    httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=[{"endpoint": "list", "kind": "error", "code": 5000}])
    assert httpx.delete(f"{sandbox.base_url}/_sandbox/faults").json() == {"faults": []}
    assert http.get(GEN).status_code == 200

    before = sandbox.state.clock.now_ms()
    moved = httpx.post(f"{sandbox.base_url}/_sandbox/clock", json={"advance": 3600}).json()["now"]
    assert moved - before >= 3_600_000
    assert httpx.post(f"{sandbox.base_url}/_sandbox/clock", json={"advance": -1}).status_code == 400

    counters = httpx.get(f"{sandbox.base_url}/_sandbox/counters").json()
    assert counters == sandbox.state.counters()
    assert (counters["create"], counters["list"], counters["faults"], counters["tasks_created"]) == (1, 1, 1, 0)
