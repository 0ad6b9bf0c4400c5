"""The headless commands, run as a script would: `python -m kling_tui ...` against the sandbox."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

from cli_helpers import kling

from kling_tui.history.store import HistoryStore

RECORD_KEYS = {
    "local_id",
    "kind",
    "status",
    "status_msg",
    "task_id",
    "external_task_id",
    "model",
    "prompt",
    "n",
    "params",
    "created_at",
    "submitted_at",
    "updated_at",
    "finished_at",
    "units",
    "error_code",
    "image_urls",
    "images",
}


def test_generate_wait_saves_images_in_history_and_copies_them_to_out(sandbox, tmp_path):
    out = tmp_path / "out"
    run = kling(
        "generate",
        "a red fox",
        "--n",
        "2",
        "--aspect-ratio",
        "1:1",
        "--wait",
        "--out",
        str(out),
        "--json",
        sandbox=sandbox,
    )
    assert run.code == 0, run.stderr
    assert run.stderr == ""  # no progress when stderr is not a terminal
    task = run.json()
    assert set(task) >= RECORD_KEYS
    assert task["status"] == "succeed" and task["prompt"] == "a red fox" and task["n"] == 2
    assert task["params"]["aspect_ratio"] == "1:1" and task["model"] == "kling-v1"
    assert task["task_id"] in sandbox.state.tasks

    with HistoryStore() as store:
        record = store.get(task["local_id"])
        folder = store.task_dir(record.local_id)
    assert record.status == "succeed" and record.task_id == task["task_id"]
    assert [str(folder / name) for name in record.image_paths] == task["images"]
    assert len(task["images"]) == 2 and len(task["copies"]) == 2
    for saved, copy in zip(task["images"], task["copies"]):
        assert copy.startswith(str(out)) and open(copy, "rb").read() == open(saved, "rb").read()


def test_generate_wait_prints_one_image_path_per_line(sandbox):
    run = kling("generate", "two owls", "--n", "2", "--wait", sandbox=sandbox)
    assert run.code == 0, run.stderr
    paths = run.stdout.splitlines()
    assert len(paths) == 2 and all(p.endswith(".png") for p in paths)
    with HistoryStore() as store:
        (row,) = store.recent()
        assert paths == [str(store.task_dir(row.local_id) / name) for name in store.get(row.local_id).image_paths]


def test_generate_without_wait_records_the_task_and_show_follows_it_to_the_end(sandbox):
    created = kling("generate", "a lighthouse", "--external-task-id", "my-job-7", "--json", sandbox=sandbox)
    assert created.code == 0, created.stderr
    task = created.json()
    assert task["status"] in ("submitted", "processing") and task["external_task_id"] == "my-job-7"
    assert sandbox.state.task(task["task_id"]) is not None
    with HistoryStore() as store:
        assert store.find_by_external_id("my-job-7").local_id == task["local_id"]

    # show refreshes a running task from the server until it is final, then its images are saved.
    deadline = time.monotonic() + 15
    shown = task
    while shown["status"] != "succeed" and time.monotonic() < deadline:
        shown = kling("show", task["local_id"], "--json", sandbox=sandbox).json()
    assert shown["status"] == "succeed" and len(shown["images"]) == 1
    assert shown["units"] == "1"

    # The same task by server task_id and by external_task_id.
    for ident in (task["task_id"], "my-job-7"):
        again = kling("show", ident, "--json", sandbox=sandbox)
        assert again.code == 0 and again.json()["local_id"] == task["local_id"]

    text = kling("show", task["local_id"], sandbox=sandbox)
    assert f"local id:    {task['local_id']}" in text.stdout
    assert "status:      succeed" in text.stdout and shown["images"][0] in text.stdout


def test_list_is_newest_first_and_export_writes_every_task(sandbox):
    ids = [kling("generate", f"picture {i}", "--json", sandbox=sandbox).json()["local_id"] for i in range(3)]

    listed = kling("list", "--json")
    assert listed.code == 0
    assert [t["local_id"] for t in listed.json()] == ids[::-1]
    assert set(listed.json()[0]) >= RECORD_KEYS
    assert [t["local_id"] for t in kling("list", "--limit", "2", "--json").json()] == ids[:0:-1]
    lines = kling("list").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ids[::-1] and "picture 2" in lines[0]

    jsonl = kling("export", "--format", "jsonl")
    assert jsonl.code == 0
    exported = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [t["local_id"] for t in exported] == ids[::-1] and exported[0]["prompt"] == "picture 2"

    rows = list(csv.DictReader(io.StringIO(kling("export", "--format", "csv").stdout)))
    assert [r["local_id"] for r in rows] == ids[::-1]
    assert rows[2]["prompt"] == "picture 0" and json.loads(rows[2]["params"])["prompt"] == "picture 0"


def test_csv_export_keeps_spreadsheets_from_running_prompts_as_formulas(sandbox):
    made = kling("generate", '=HYPERLINK("http://x","click")', "--json", sandbox=sandbox)
    assert made.code == 0
    (row,) = csv.DictReader(io.StringIO(kling("export", "--format", "csv").stdout))
    assert row["prompt"] == '\'=HYPERLINK("http://x","click")'
    assert row["n"] == "1"
    (line,) = kling("export", "--format", "jsonl").stdout.splitlines()
    assert json.loads(line)["prompt"] == '=HYPERLINK("http://x","click")'


def test_download_saves_again_and_copies_to_out(sandbox, tmp_path):
    task = kling("generate", "a bridge", "--wait", "--json", sandbox=sandbox).json()
    saved = task["images"][0]
    with open(saved, "rb") as handle:
        original = handle.read()
    os.remove(saved)

    run = kling("download", task["task_id"], "--out", str(tmp_path / "dl"), sandbox=sandbox)
    assert run.code == 0, run.stderr
    (copy,) = run.stdout.splitlines()
    assert copy == str(tmp_path / "dl" / f"{task['local_id']}-image-1.png")
    assert open(saved, "rb").read() == original == open(copy, "rb").read()

    plain = kling("download", task["local_id"], sandbox=sandbox)
    assert plain.code == 0 and plain.stdout.splitlines() == [saved]


def test_server_and_user_text_is_printed_as_data(sandbox):
    task = kling("generate", "a cat \x1b[2J\x1b]0;owned\x07 \u202e", "--json", sandbox=sandbox).json()
    assert task["prompt"] == "a cat \x1b[2J\x1b]0;owned\x07 \u202e"  # JSON keeps the exact text
    text = kling("show", task["local_id"], sandbox=sandbox).stdout + kling("list").stdout
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "a cat \\x1b[2J\\x1b]0;owned\\x07 \\u202e" in text


def test_help_and_the_headless_module_stay_light():
    code = (
        "import json, sys\n"
        "from kling_tui.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('httpx', 'textual', 'PIL', 'uvicorn', 'kling_tui.cli.headless') if m in sys.modules]\n"
        "import kling_tui.cli.headless\n"
        "print(json.dumps([heavy, 'textual' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [[], False]


def test_locate_prints_every_path_under_kling_tui_home():
    run = kling("locate", auth="none")
    assert run.code == 0
    paths = dict(line.split(":", 1) for line in run.stdout.splitlines())
    home = os.path.realpath(os.environ["KLING_TUI_HOME"])
    expected = {"config file", "config dir", "data dir", "history", "sandbox history", "downloads", "cache", "log"}
    assert set(paths) == expected
    for name, path in paths.items():
        assert os.path.realpath(path.strip()).startswith(home + os.sep), name
    assert paths["sandbox history"].strip() != paths["history"].strip()
