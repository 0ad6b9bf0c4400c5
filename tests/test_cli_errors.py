"""Exit codes, error messages, credentials and --sandbox of the headless commands."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys

from cli_helpers import kling

from kling_tui.base.locations import history_dir
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET_KEY


def history(sandbox: bool = False) -> list:
    with HistoryStore(history_dir(sandbox=sandbox)) as store:
        return [store.get(row.local_id) for row in store.recent()]


def test_invalid_input_exits_2_naming_field_and_rule_and_sends_nothing(sandbox):
    run = kling("generate", "a cat", "--n", "12", "--aspect-ratio", "5:1", "--json", sandbox=sandbox)
    assert run.code == 2
    assert "n (--n): must be from 1 to 9 (got 12)" in run.stderr
    assert "aspect_ratio (--aspect-ratio)" in run.stderr and "nothing was sent" in run.stderr
    problems = run.json()["error"]["problems"]
    assert {p["field"] for p in problems} == {"n", "aspect_ratio"}

    missing = kling("generate", "a cat", "--image", "/no/such/file.png", sandbox=sandbox)
    assert missing.code == 2 and "image (--image): file not found" in missing.stderr

    for bad in (["--resolution", "4k"], ["--n", "many"], ["--image-fidelity", "high"]):
        assert kling("generate", "a cat", *bad, sandbox=sandbox).code == 2  # argparse

    out_without_wait = kling("generate", "a cat", "--out", "somewhere", sandbox=sandbox)
    assert out_without_wait.code == 2 and "--out: only works with --wait" in out_without_wait.stderr

    assert sandbox.state.counters()["create"] == 0
    assert history() == []


def test_missing_credentials_exit_2_and_say_how_to_set_them(sandbox):
    run = kling("generate", "a cat", sandbox=sandbox, auth="none")
    assert run.code == 2
    for hint in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "config.toml", "--sandbox"):
        assert hint in run.stderr
    assert sandbox.state.counters()["create"] == 0 and history() == []


def test_api_error_exits_3_with_kling_code_and_message_and_keeps_the_record(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1102)
    run = kling("generate", "a cat", "--wait", "--json", sandbox=sandbox)
    assert run.code == 3
    assert "Kling 1102" in run.stderr and "Account balance not enough" in run.stderr
    answer = run.json()
    assert answer["status"] == "not_created" and answer["error"]["code"] == 1102
    # Written to history before the create was sent, and settled by the refusal.
    (record,) = history()
    assert record.local_id == answer["local_id"] and record.status == "not_created" and record.error_code == 1102


def test_failed_task_exits_4_with_its_status_message(sandbox):
    run = kling("generate", "a cat #fail", "--wait", "--json", sandbox=sandbox)
    assert run.code == 4
    answer = run.json()
    assert answer["status"] == "failed" and "#fail" in answer["status_msg"]
    assert answer["error"]["exit_code"] == 4 and "#fail" in run.stderr
    assert history()[0].status == "failed"

    download = kling("download", answer["local_id"], sandbox=sandbox)
    assert download.code == 4 and "the task failed" in download.stderr
    shown = kling("show", answer["task_id"], "--json", sandbox=sandbox)
    assert shown.code == 0 and shown.json()["status"] == "failed"


def test_unknown_task_and_reused_external_id_exit_2(sandbox):
    unknown = kling("show", "no-such-task", sandbox=sandbox)
    assert unknown.code == 2 and "no task no-such-task in the history" in unknown.stderr
    assert kling("download", "no-such-task", "--json", sandbox=sandbox).json()["error"]["exit_code"] == 2

    assert kling("generate", "first", "--external-task-id", "job-1", sandbox=sandbox).code == 0
    again = kling("generate", "second", "--external-task-id", "job-1", sandbox=sandbox)
    assert again.code == 2 and "already used" in again.stderr
    assert sandbox.state.counters()["create"] == 1


def test_key_pair_auth_never_shows_the_secret_or_the_jwt(sandbox):
    # kling() fails on any secret or JWT in the output; the history must not hold them either.
    run = kling("generate", "a cat", "--wait", "--json", sandbox=sandbox, auth="ak_sk")
    assert run.code == 0, run.stderr
    with HistoryStore() as store:
        toml = (store.task_dir(run.json()["local_id"]) / "task.toml").read_text()
    assert DEFAULT_SECRET_KEY not in toml and "eyJ" not in toml
    for args in (["list", "--json"], ["export", "--format", "jsonl"], ["export", "--format", "csv"]):
        assert kling(*args, auth="ak_sk").code == 0


def test_sandbox_flag_before_or_after_the_command_needs_no_credentials():
    before = kling("--sandbox", "generate", "a cat", "--json", auth="none")
    after = kling("generate", "a dog", "--sandbox", "--json", auth="none")
    for run in (before, after):
        assert run.code == 0, run.stderr
        assert run.json()["task_id"] and "add --wait" in run.stderr
    # The sandbox keeps its own history: its tasks never mix with the real service's.
    assert [r.prompt for r in history(sandbox=True)] == ["a dog", "a cat"]
    assert history() == []
    listed = kling("list", "--sandbox", auth="none")
    assert listed.code == 0 and "a dog" in listed.stdout
    assert kling("list", auth="none").stdout == ""


def test_api_error_while_waiting_exits_3_and_the_task_stays_in_history(sandbox):
    sandbox.state.faults.add(endpoint="list", kind="error", code=1103)
    run = kling("generate", "a cat", "--wait", "--json", sandbox=sandbox)
    assert run.code == 3 and "Kling 1103" in run.stderr
    answer = run.json()
    assert answer["error"]["code"] == 1103 and answer["task_id"]
    (record,) = history()
    assert record.task_id == answer["task_id"] and record.status in ("submitted", "processing")

    sandbox.state.faults.add(endpoint="get", kind="error", code=1103)
    shown = kling("show", record.local_id, "--json", sandbox=sandbox)
    assert shown.code == 3 and shown.json()["local_id"] == record.local_id


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(sandbox):
    primary, secondary = pty.openpty()
    env = {**os.environ, "KLING_BASE_URL": sandbox.base_url, "KLING_API_KEY": DEFAULT_API_KEY}
    done = subprocess.run(
        [sys.executable, "-m", "kling_tui", "generate", "a cat", "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
        timeout=60,
    )
    os.close(secondary)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once everything written has been read
        while chunk := os.read(primary, 4096):
            shown += chunk
    os.close(primary)
    assert done.returncode == 0
    progress = shown.decode()
    assert ": submitted (task " in progress and ": succeed" in progress
    assert DEFAULT_API_KEY not in progress
    # stdout, not a terminal here, holds only the result.
    assert done.stdout.strip().endswith("image-1.png") and len(done.stdout.splitlines()) == 1
