"""`kling-tui batch FILE`: rows checked with their line numbers, each row created once however
often the file is run, and a batch killed at random moments completed by running it again."""

from __future__ import annotations

import base64
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from cli_helpers import kling

from kling_tui.api.prices import price
from kling_tui.config import load_settings
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

KILL_SEED = int(os.environ.get("KILL_SEED", "20261129"))


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _plan(path: Path, sandbox) -> dict[int, dict]:
    run = kling("batch", str(path), "--dry-run", "--json", sandbox=sandbox)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    return {line["line"]: line for line in lines if "line" in line}


def test_dry_run_prints_the_plan_count_and_estimate_and_names_broken_rows_by_line(sandbox, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "a cat", "n": 2}\n'
        "\n"
        '{"prompt": "too many", "n": 42}\n'
        "not json\n"
        '{"prompt": "a dog", "colour": "red"}\n'
        '{"subject_images": ["https://example.com/face.png"], "prompt": "two friends"}\n',
        encoding="utf-8",
    )
    run = kling("batch", str(path), "--dry-run", sandbox=sandbox)
    assert run.code == 2
    assert "rows.jsonl:3: n: must be from 1 to 9" in run.stderr
    assert "rows.jsonl:4: not valid JSON" in run.stderr
    assert "rows.jsonl:5: colour: not a field" in run.stderr
    caps = load_settings().capabilities()
    units = price(caps, "generation", {"prompt": "a cat", "n": 2}).units
    units += price(caps, "multi", {"subject_images": ["https://example.com/face.png"], "prompt": "two friends"}).units
    assert f"5 rows (3 invalid, 2 new); 2 to send, about {units:g} units; nothing was sent" in run.stdout
    plan = _plan(path, sandbox)
    assert {line: p["plan"] for line, p in plan.items()} == {
        1: "new",
        3: "invalid",
        4: "invalid",
        5: "invalid",
        6: "new",
    }
    assert plan[6]["kind"] == "multi"  # inferred from its columns
    assert sandbox.state.counters()["create"] == 0 and sandbox.state.counters()["multi_create"] == 0


def test_csv_rows_go_rerun_creates_nothing_and_strict_sends_nothing(sandbox, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        'id,prompt,n,aspect_ratio,note\nfox,"a red fox, running",2,16:9,for the cover\nowl,an owl,x,1:1,\nbee,a bee,,,\n',
        encoding="utf-8",
    )
    strict = kling("batch", str(path), "--strict", sandbox=sandbox)
    assert strict.code == 2 and "rows.csv:3: n: must be a whole number" in strict.stderr
    assert sandbox.state.counters()["tasks_created"] == 0

    first = kling("batch", str(path), "--wait", "--json", sandbox=sandbox)
    assert first.code == 2, first.stderr  # one row broke a rule; the others went
    rows = {row["line"]: row for row in map(json.loads, first.stdout.splitlines())}
    assert rows[2]["outcome"] == rows[4]["outcome"] == "succeed"
    assert len(rows[2]["images"]) == 2 and all(Path(p).exists() for p in rows[2]["images"])
    assert rows[3]["outcome"] == "invalid" and rows[3]["problems"] == ["n: must be a whole number (got 'x')"]
    assert sandbox.state.counters()["tasks_created"] == 2
    with HistoryStore() as store:
        fox = store.find_by_external_id(rows[2]["external_task_id"])
        assert fox is not None and fox.prompt == "a red fox, running" and fox.params["aspect_ratio"] == "16:9"
        assert fox.note == "for the cover" and fox.group is not None

    again = kling("batch", str(path), "--json", sandbox=sandbox)
    assert again.code == 2
    assert {row["line"]: row["outcome"] for row in map(json.loads, again.stdout.splitlines())} == {
        2: "succeed",
        3: "invalid",
        4: "succeed",
    }
    assert sandbox.state.counters()["tasks_created"] == 2


def test_a_create_sent_without_an_answer_is_looked_up_and_not_sent_again(sandbox, tmp_path):
    path = _write_jsonl(tmp_path / "one.jsonl", [{"id": "only", "prompt": "a lighthouse"}])
    ext = _plan(path, sandbox)[1]["external_task_id"]
    # As a run killed after sending leaves it: the server holds the task, history says pending.
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http:
        created = http.post("/v1/images/generations", json={"prompt": "a lighthouse", "external_task_id": ext}).json()
    with HistoryStore() as store:
        store.new_record("generation", {"prompt": "a lighthouse"}, external_task_id=ext)

    run = kling("batch", str(path), "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    row = json.loads(run.stdout)
    assert row["task_id"] == created["data"]["task_id"] and row["outcome"] == "succeed"
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 1 and counters["external_id_reuse"] == 0


def _start(path: Path, base_url: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "KLING_BASE_URL": base_url, "KLING_API_KEY": DEFAULT_API_KEY, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kling_tui", "batch", str(path), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=open(os.environ.get("BATCH_STDERR", os.devnull), "a"),
        env=env,
    )


def _kill_after_lines(child: subprocess.Popen, lines: int, timeout: float = 30.0) -> int:
    """SIGKILL the child once it has reported `lines` rows (or has ended); returns the rows seen."""
    assert child.stdout is not None
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < lines and time.monotonic() < deadline:
        readable, _, _ = select.select([child.stdout], [], [], 0.1)
        if readable:
            if not child.stdout.readline():
                break
            seen += 1
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    return seen


def test_a_batch_killed_at_random_moments_creates_every_row_exactly_once(tmp_path, isolated_home):
    rng = random.Random(KILL_SEED)
    rows = []
    for i in range(200):
        if i % 10 == 0:
            rows.append({"prompt": "the same prompt each tenth row"})  # identical rows without an id
        elif i % 2:
            rows.append({"id": f"row-{i}", "prompt": f"row {i}", "n": 1 + i % 3})
        else:
            rows.append({"prompt": f"row {i} without an id"})
    path = _write_jsonl(tmp_path / "big.jsonl", rows)
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[queue]\nconcurrency = 40\n", encoding="utf-8")
    config.chmod(0o600)
    with Sandbox(SandboxConfig(slots=40, submitted_seconds=0.02, processing_seconds=0.05, seed=7)) as sandbox:
        plan = _plan(path, sandbox)
        expected = {p["external_task_id"] for p in plan.values()}
        assert len(expected) == 200  # identical rows still get ids of their own
        faults = sandbox.state.faults
        faults.add(endpoint="create", kind="created_5002", rate=0.08)
        faults.add(endpoint="create", kind="drop", rate=0.05)
        faults.add(endpoint="get", kind="error", code=5000, rate=0.05)
        faults.add(endpoint="list", kind="error", code=5001, rate=0.05)

        kills = []
        for _ in range(6):
            child = _start(path, sandbox.base_url)
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.2, 1.0))  # anywhere in start-up, reading and the first sends
                kills.append(_kill_after_lines(child, 0))
            else:
                kills.append(_kill_after_lines(child, rng.randint(1, 40)))

        before_final = sandbox.state.counters()["tasks_created"]
        for _attempt in range(3):  # a row the faults kept from being created goes on the next run
            final = _start(path, sandbox.base_url)
            out, _ = final.communicate(timeout=120)
            if final.returncode == 0:
                break
        assert final.returncode == 0, out
        reported = [json.loads(line) for line in out.decode().splitlines()]
        assert sorted(r["line"] for r in reported) == sorted(plan)
        assert {r["outcome"] for r in reported} <= {"submitted", "processing", "succeed"}, [
            (r["status"], r["status_msg"])
            for r in reported
            if r["outcome"] not in ("submitted", "processing", "succeed")
        ]
        server = {t.external_task_id: t.task_id for t in sandbox.state.tasks.values()}
        on_server = Counter(t.external_task_id for t in sandbox.state.tasks.values())
        counters = sandbox.state.counters()
    assert set(on_server) == expected, "a row is missing on the server, or a task is not from the file"
    assert [ext for ext, times in on_server.items() if times > 1] == []
    assert counters["tasks_created"] == 200 and counters["external_id_reuse"] == 0
    assert counters["faults"] > 0 and 0 < before_final < 200  # the kills did cut runs short
    with HistoryStore() as store:
        records = [store.get(row.local_id) for row in store.recent(limit=10_000)]
    by_ext = Counter(r.external_task_id for r in records if r is not None)
    assert set(by_ext) == expected and max(by_ext.values()) == 1, "a row is missing from history or recorded twice"
    for r in records:
        assert r is not None and r.task_id == server[r.external_task_id]
        assert r.status in ("submitted", "processing", "succeed")
    print(f"\nbatch kill: rows reported before each kill {kills}, created before the final run {before_final}")


def test_a_second_run_of_a_file_still_running_sends_nothing(sandbox, tmp_path):
    import fcntl

    from kling_tui.base.locations import data_dir
    from kling_tui.cli.batch import path_group

    path = _write_jsonl(tmp_path / "one.jsonl", [{"prompt": "a kite"}])
    with (data_dir() / f"batch-{path_group(path)}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        second = kling("batch", str(path), sandbox=sandbox)
        assert second.code == 2 and "another kling-tui batch is running one.jsonl" in second.stderr
        assert kling("batch", str(path), "--dry-run", sandbox=sandbox).code == 0  # looking is fine
    assert sandbox.state.counters()["tasks_created"] == 0
    assert kling("batch", str(path), sandbox=sandbox).code == 0
    assert sandbox.state.counters()["tasks_created"] == 1


def test_rows_may_use_an_image_of_a_past_task_and_keep_within_the_budget(sandbox, tmp_path, isolated_home):
    first = kling("generate", "a red door", "--wait", "--json", sandbox=sandbox)
    assert first.code == 0, first.stderr
    door = first.json()
    path = _write_jsonl(
        tmp_path / "refs.jsonl",
        [
            {"id": "again", "prompt": "the door in winter", "image": f"{door['local_id']}:1", "model_name": "kling-v1"},
            {"id": "none", "prompt": "a window", "image": f"{door['local_id']}:5"},
        ],
    )
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[budget]\ndaily = 1.5\n", encoding="utf-8")  # the door spent 1 unit today
    config.chmod(0o600)
    refused = kling("batch", str(path), sandbox=sandbox)
    assert refused.code == 2 and "refs.jsonl:2: image: task" in refused.stderr and "has images 1 to 1" in refused.stderr
    assert "not sent: the daily budget is 1.5 units" in refused.stderr
    assert sandbox.state.counters()["tasks_created"] == 1

    run = kling("batch", str(path), "--yes", "--wait", "--json", sandbox=sandbox)
    assert run.code == 2, run.stderr  # line 2 still breaks its rule
    made = json.loads(run.stdout.splitlines()[0])
    assert made["outcome"] == "succeed"
    sent = sandbox.state.task(made["task_id"]).payload["image"]
    assert base64.b64decode(sent) == Path(door["images"][0]).read_bytes()
    with HistoryStore() as store:
        record = store.get(made["local_id"])
        assert record is not None and record.parents == [{"local_id": door["local_id"], "image": 1}]
