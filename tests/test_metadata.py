"""Parameters inside saved images: written where images are saved, read back by `kling-tui import`."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
from cli_helpers import kling
from PIL import Image

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.types import GenerationRequest, MultiImageRequest
from kling_tui.history.metadata import MetadataError, embed_parameters, read_parameters, sanitize_params
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

SECRET = "sk-do-not-keep-me"


async def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def reference_png(path, size=(400, 400)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 40, 40)).save(path, "PNG")
    return path


@pytest.fixture
async def bench(sandbox):
    client = KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), backoff=0.01)
    tracker = Tracker(client, min_interval=0.05, max_interval=0.1)
    bench = Workbench(client, HistoryStore(), default_capabilities(), tracker=tracker, budget=SlotBudget(9))
    yield bench
    await bench.aclose()
    await client.aclose()


async def test_every_image_the_workbench_saves_carries_how_it_was_made(sandbox, bench, tmp_path):
    ref = reference_png(tmp_path / "private-folder" / "my ref.png")
    generation = GenerationRequest(
        prompt="a lighthouse, ünïcode ✓",
        model_name="kling-v1-5",
        image=str(ref),
        image_reference="subject",
        image_fidelity=0.4,
        n=2,
        aspect_ratio="1:1",
    )
    multi = MultiImageRequest(
        subject_images=[str(ref), "https://example.com/cat.png"], prompt="the cat", model_name="kling-v2", n=1
    )
    follow = asyncio.create_task(bench.follow())
    try:
        records = [await bench.submit(generation), await bench.submit(multi)]
        for record in records:
            await wait_until(lambda r=record: len(bench.store.get(r.local_id).image_paths) == r.n)
    finally:
        follow.cancel()
    for submitted in records:
        record = bench.store.get(submitted.local_id)
        folder = bench.store.task_dir(record.local_id)
        for index, name in enumerate(record.image_paths):
            raw = (folder / name).read_bytes()
            assert b"private-folder" not in raw  # a local reference travels by its name only
            found = read_parameters(folder / name)
            assert found is not None, f"{record.kind} image {name} has no parameters"
            assert found.kind == record.kind
            assert found.params == sanitize_params(record.params)
            assert found.data["task_id"] == record.task_id and found.data["local_id"] == record.local_id
            assert found.data["external_task_id"] == record.external_task_id
            assert found.data["image_index"] == index + 1
            assert found.data["units"] == record.units and found.data["finished_at"].endswith("Z")
            with Image.open(folder / name) as img:
                img.verify()  # still a whole, valid image
    gen, mul = (read_parameters(bench.store.task_dir(r.local_id) / "image-1.png") for r in records)
    assert gen.prompt == "a lighthouse, ünïcode ✓" and gen.params["model_name"] == "kling-v1-5"
    assert gen.params["image"] == "my ref.png" and gen.params["image_fidelity"] == 0.4
    assert gen.data["endpoint"] == "/v1/images/generations"
    assert mul.params["subject_images"] == ["my ref.png", "https://example.com/cat.png"]
    assert mul.data["endpoint"] == "/v1/images/multi-image2image"


def _record(kind="generation", **params):
    store = HistoryStore()
    record = store.new_record(kind, params)
    return store, store.update(record.local_id, status="succeed", task_id="t-1", units="1")


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_carry_them_in_exif_without_being_re_encoded(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.effect_noise((64, 48), 40).convert("RGB").save(path, fmt, quality=80)
    with Image.open(path) as img:
        before = img.tobytes()
    _, record = _record(prompt="a night ✓ sky", model_name="kling-v2", n=1)
    embed_parameters(path, record, 0)
    with Image.open(path) as img:
        assert img.format == fmt and img.tobytes() == before  # pixels untouched
    found = read_parameters(path)
    assert found.prompt == "a night ✓ sky" and found.params["model_name"] == "kling-v2"


def test_a_new_kind_round_trips_with_no_code_of_its_own(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (20, 10), "blue").save(path)
    params = {"prompt": "grow it", "image": "/home/me/in.jpg", "expand": {"left": 0.2, "top": [1, 2]}, "n": 1}
    record = TaskRecord(local_id="20261129-120000-00000000", kind="omni", params=params, external_task_id="e-1")
    embed_parameters(path, record)
    found = read_parameters(path)
    assert found.kind == "omni" and found.data["external_task_id"] == "e-1"
    assert found.params == {"prompt": "grow it", "image": "in.jpg", "expand": {"left": 0.2, "top": [1, 2]}, "n": 1}


def test_credentials_and_inline_image_data_never_travel(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (20, 10), "blue").save(path)
    payload = "iVBORw0KGgo" + "A" * 400
    _, record = _record(prompt="p", image=payload, style_image="data:image/png;base64," + payload)
    record.params["api_key"] = SECRET
    record.params["nested"] = {"secret_key": SECRET, "image": payload}
    embed_parameters(path, record)
    raw = path.read_bytes()
    assert SECRET.encode() not in raw and b"AAAAAAAAAAAAAAAA" not in raw
    found = read_parameters(path)
    assert "omitted" in found.params["image"] and "omitted" in found.params["style_image"]
    assert "api_key" not in found.params and "secret_key" not in found.params["nested"]


def test_foreign_and_broken_files(tmp_path):
    plain_png = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain_png)
    assert read_parameters(plain_png) is None
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(MetadataError):
        read_parameters(tmp_path / "notes.png")
    with pytest.raises(MetadataError):
        read_parameters(tmp_path / "missing.png")
    with pytest.raises(MetadataError):
        embed_parameters(tmp_path / "notes.png", _record(prompt="p")[1])
    # Another program's JSON in our chunk is not ours.
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("kling-tui", json.dumps({"kind": 3}))
    Image.new("RGB", (8, 8)).save(tmp_path / "odd.png", pnginfo=info)
    assert read_parameters(tmp_path / "odd.png") is None


def test_import_cli_reads_them_back_and_says_so_for_foreign_images(sandbox, tmp_path):
    run = kling("generate", "a [bold]red[/bold] fox", "--negative", "rain", "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    image = run.json()["images"][0]

    data = kling("import", image, "--json").json()
    assert data["made_by_kling_tui"] is True and data["kind"] == "generation"
    assert data["params"]["prompt"] == "a [bold]red[/bold] fox" and data["params"]["negative_prompt"] == "rain"
    assert data["task_id"] == run.json()["task_id"]

    text = kling("import", image)
    assert text.code == 0
    assert "prompt:            a [bold]red[/bold] fox" in text.stdout and "negative_prompt:   rain" in text.stdout

    foreign = tmp_path / "photo.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (400, 400)).save(buf, "JPEG")
    foreign.write_bytes(buf.getvalue())
    said = kling("import", str(foreign))
    assert said.code == 0 and "not made by kling-tui" in said.stdout and "reference image" in said.stdout
    assert kling("import", str(foreign), "--json").json()["made_by_kling_tui"] is False

    missing = kling("import", str(tmp_path / "nope.png"))
    assert missing.code == 2 and "no such file" in missing.stderr


def test_a_file_that_cannot_carry_them_is_kept_as_it_was(tmp_path):
    from kling_tui.history.metadata import keep_parameters

    folder = tmp_path / "task"
    folder.mkdir()
    cut = folder / "image-1.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    cut.write_bytes(buf.getvalue()[:-40])  # cut short, as a broken download would be
    before = cut.read_bytes()
    assert keep_parameters(cut, _record(prompt="p")[1], 0) is False
    assert cut.read_bytes() == before and [p.name for p in folder.iterdir()] == ["image-1.png"]
