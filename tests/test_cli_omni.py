"""`kling-tui omni`, `expand` and `multi`, run as a script would, and the lineage they record."""

from __future__ import annotations

import csv
import io
import json

from cli_helpers import kling
from PIL import Image


def png(path, size=(400, 300), colour=(30, 200, 60)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def created(sandbox, kind: str) -> int:
    return sandbox.state.counters()[f"{kind}_create"]


def test_omni_wait_saves_the_images_and_copies_them_to_out(sandbox, tmp_path):
    photo = png(tmp_path / "photo.png")
    out = tmp_path / "out"
    run = kling(
        "omni", "<<<image_1>>> as a woodcut", "--image", photo, "--n", "2", "--wait", "--out", str(out), "--json",
        sandbox=sandbox,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    task = run.json()
    assert (task["kind"], task["status"], task["n"]) == ("omni", "succeed", 2)
    assert task["params"]["images"] == [photo] and task["parents"] == []
    assert len(task["copies"]) == 2 and all(name.endswith(".png") for name in task["copies"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.split("/")[-1] for p in task["copies"])


def test_a_series_makes_series_amount_images(sandbox):
    run = kling("omni", "a fox's day", "--model", "kling-v3-omni", "--series", "3", "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    task = run.json()
    assert task["params"]["result_type"] == "series" and len(task["images"]) == 3
    assert task["n"] == 3  # the images it made, as `list` shows them
    assert f"{task['local_id']}  succeed     kling-v3-omni n=3" in kling("list").stdout


def test_an_image_from_the_history_is_the_input_and_its_lineage_is_recorded(sandbox, tmp_path):
    first = kling("generate", "a lighthouse", "--n", "2", "--wait", "--json", sandbox=sandbox).json()
    parent = first["local_id"]

    edit = kling("omni", "<<<image_1>>> at night", "--image", f"{parent}:2", "--wait", "--json", sandbox=sandbox)
    assert edit.code == 0, edit.stderr
    child = edit.json()
    assert child["parents"] == [{"local_id": parent, "image": 2}]
    assert child["params"]["images"] == [first["images"][1]]  # the saved file of image 2
    # The task_id works as TASK too, and an expansion records its parent the same way.
    grown = kling("expand", first["task_id"], "--left", "0.5", "--right", "0.5", "--wait", "--json", sandbox=sandbox)
    assert grown.code == 0, grown.stderr
    assert grown.json()["parents"] == [{"local_id": parent, "image": 1}]
    with Image.open(grown.json()["images"][0]) as img, Image.open(first["images"][0]) as original:
        assert img.size == (original.width * 2, original.height)

    shown = kling("show", child["local_id"])
    assert f"made from:   {parent} image 2" in shown.stdout.splitlines()
    lines = [json.loads(line) for line in kling("export", "--format", "jsonl").stdout.splitlines()]
    assert {r["local_id"]: r["parents"] for r in lines}[child["local_id"]] == [{"local_id": parent, "image": 2}]
    rows = {r["local_id"]: r for r in csv.DictReader(io.StringIO(kling("export", "--format", "csv").stdout))}
    assert rows[child["local_id"]]["parents"] == f"{parent}:2" and rows[parent]["parents"] == ""


def test_multi_takes_subjects_scene_and_style(sandbox, tmp_path):
    cat, room = png(tmp_path / "cat.png", (400, 400)), png(tmp_path / "room.png", (400, 400), (90, 90, 200))
    run = kling(
        "multi", "the cat in the room", "--subject", cat, "--subject", cat, "--scene", room, "--model", "kling-v2-1",
        "--wait", "--json", sandbox=sandbox,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    task = run.json()
    assert task["kind"] == "multi" and task["params"]["subject_images"] == [cat, cat]
    assert task["params"]["scene_image"] == room and len(task["images"]) == 1


def test_invalid_input_is_exit_2_names_the_option_and_sends_nothing(sandbox, tmp_path):
    photo = png(tmp_path / "photo.png")
    run = kling("omni", "mix <<<image_1>>> and <<<image_2>>>", "--image", photo, sandbox=sandbox)
    assert run.code == 2
    assert "prompt (PROMPT): <<<image_2>>> refers to no image (1 given)" in run.stderr

    run = kling("omni", "a city", "--resolution", "4k", sandbox=sandbox)
    assert run.code == 2 and "resolution (--resolution): kling-image-o1 supports 1k, 2k (got '4k')" in run.stderr

    run = kling("expand", photo, "--left", "1", "--right", "1", "--up", "0.5", sandbox=sandbox)
    assert run.code == 2 and "expansion_ratio (--left/--right/--up/--down): the new image may be at most 3x" in (
        run.stderr
    )
    run = kling("expand", photo, "--up", "2.5", sandbox=sandbox)
    assert run.code == 2 and "up_expansion_ratio (--up): must be from 0 to 2 (got 2.5)" in run.stderr

    run = kling("multi", "x", "--subject", str(tmp_path / "missing.png"), "--model", "kling-v2-1", sandbox=sandbox)
    assert run.code == 2 and "subject_image_list[0] (--subject): file not found" in run.stderr
    assert (created(sandbox, "omni"), created(sandbox, "expand"), created(sandbox, "multi")) == (0, 0, 0)


def test_a_task_reference_that_names_no_image_is_exit_2(sandbox):
    first = kling("generate", "a fox", "--wait", "--json", sandbox=sandbox).json()
    run = kling("omni", "<<<image_1>>>", "--image", f"{first['local_id']}:3", sandbox=sandbox)
    assert run.code == 2 and f"--image: task {first['local_id']} has images 1 to 1 (got 3)" in run.stderr
    run = kling("expand", "no-such-task", "--up", "1", sandbox=sandbox)
    assert run.code == 2
    assert "IMAGE: no-such-task is not a .jpg/.png file, an http(s) URL or a task in the history" in run.stderr
    assert kling("omni", "x", "--n", "2", "--series", "3", sandbox=sandbox).code == 2  # one or the other
    assert created(sandbox, "omni") == 0


def test_images_the_prompt_never_refers_to_are_a_warning(sandbox, tmp_path):
    photo = png(tmp_path / "photo.png")
    run = kling("omni", "a quiet lake", "--image", photo, sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert "warning: prompt: never refers to <<<image_1>>>" in run.stderr


def test_failed_task_is_exit_4_and_api_error_is_exit_3(sandbox, tmp_path):
    assert kling("omni", "a storm #fail", "--wait", sandbox=sandbox).code == 4
    sandbox.state.faults.add(endpoint="expand_create", kind="error", code=1102)
    run = kling("expand", png(tmp_path / "p.png"), "--up", "1", sandbox=sandbox)
    assert run.code == 3 and "balance" in run.stderr.lower()
