"""Callbacks: the bare task object on every status change, signed when a webhook secret is set."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kling_tui.api.webhooks import generate_secret, verify
from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

GEN = "/v1/images/generations"


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kling-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} callbacks arrived, expected {count}")
            time.sleep(0.02)
        return list(self.received)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def create(sb: Sandbox, **payload) -> str:
    answer = httpx.post(sb.base_url + GEN, json=payload, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["task_id"]


def test_signed_callbacks_arrive_for_each_status_in_order(sandbox_config, receiver):
    secret = generate_secret()
    sandbox_config.webhook_secret = secret
    with Sandbox(sandbox_config) as sb:
        task_id = create(sb, prompt="a kite", n=2, callback_url=receiver.url, external_task_id="kite-1")
        calls = receiver.wait_for(3)  # nobody polls: the sandbox's own ticker moves the task
        for headers, body in calls:
            assert headers["content-type"] == "application/json"
            verify(secret, headers, body, now=sb.state.clock.now())
        tasks = [json.loads(body) for _, body in calls]
        assert [t["task_status"] for t in tasks] == ["submitted", "processing", "succeed"]
        assert all(t["task_id"] == task_id and "code" not in t for t in tasks)  # bare task, no envelope
        assert tasks[-1]["task_info"] == {"external_task_id": "kite-1"}
        assert len(tasks[-1]["task_result"]["images"]) == 2
        assert len({h["webhook-id"] for h, _ in calls}) == 3
        # The sandbox counts a callback once the receiver has answered it, just after the
        # receiver has recorded it: wait for the count rather than read it at once.
        deadline = time.monotonic() + 5
        while sb.state.counters()["callbacks_sent"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sb.state.counters()["callbacks_sent"] == 3


def test_callbacks_without_a_secret_are_unsigned_and_report_failure(sandbox, receiver):
    create(sandbox, prompt="a storm #fail", callback_url=receiver.url)
    calls = receiver.wait_for(3)
    assert "webhook-signature" not in calls[0][0]
    last = json.loads(calls[-1][1])
    assert (last["task_status"], last["task_status_msg"]) == ("failed", "Failure requested by the prompt (#fail)")


def test_undeliverable_callbacks_are_counted_and_harmless(sandbox):
    with Receiver() as closed:
        dead_url = closed.url
    task_id = create(sandbox, prompt="a bridge", callback_url=dead_url)
    deadline = time.monotonic() + 10
    while sandbox.state.counters()["callbacks_failed"] < 3:
        assert time.monotonic() < deadline, sandbox.state.counters()
        time.sleep(0.02)
    assert sandbox.state.task(task_id).status == "succeed"
    assert sandbox.state.counters()["callbacks_sent"] == 0


def test_clock_jumps_still_send_every_status(receiver):
    with Sandbox(SandboxConfig(submitted_seconds=100, processing_seconds=100)) as sb:
        create(sb, prompt="a comet", callback_url=receiver.url)
        receiver.wait_for(1)
        sb.state.clock.advance(1000)
        statuses = [json.loads(body)["task_status"] for _, body in receiver.wait_for(3)]
        assert statuses == ["submitted", "processing", "succeed"]
