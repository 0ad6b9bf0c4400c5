"""Lineage: a task made from another task's image records its parent; TASK[:INDEX] names such an image."""

from __future__ import annotations

import re
import time
import tomllib

import pytest
from PIL import Image

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.types import OmniRequest
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.references import ImageInput, ImageRefError, resolve_image
from kling_tui.work.workbench import Workbench

DAY = 86400


@pytest.fixture
def store():
    with HistoryStore() as s:
        yield s


def finished_task(store, images=2, saved=None, finished_at=None, task_id="860000000000000007", ext="ext-parent"):
    """A succeeded task with `images` results, of which the first `saved` are on disk."""
    record = store.new_record("generation", {"prompt": "a lighthouse", "n": images}, external_task_id=ext)
    saved = images if saved is None else saved
    folder = store.task_dir(record.local_id)
    names = []
    for i in range(saved):
        Image.new("RGB", (400, 400), (10 * i, 0, 0)).save(folder / f"image-{i + 1}.png")
        names.append(f"image-{i + 1}.png")
    return store.update(
        record.local_id,
        status="succeed",
        task_id=task_id,
        finished_at=finished_at or time.time(),
        image_urls=[f"https://cdn.example/{i}.png" for i in range(images)],
        image_paths=names,
    )


def test_parents_are_written_to_task_toml_and_read_back(store):
    record = store.new_record("omni", {"prompt": "<<<image_1>>>"}, parents=[("20261129-100000-00000000", 2)])
    text = (store.task_dir(record.local_id) / "task.toml").read_text()
    assert tomllib.loads(text)["parents"] == [{"local_id": "20261129-100000-00000000", "image": 2}]
    store.close()
    with HistoryStore() as again:
        assert again.get(record.local_id).parents == [{"local_id": "20261129-100000-00000000", "image": 2}]


def test_a_record_written_before_lineage_is_still_readable(store):
    record = store.new_record("generation", {"prompt": "old"})
    path = store.task_dir(record.local_id) / "task.toml"
    assert "parents" not in path.read_text()  # nothing written when there is no parent
    assert store.get(record.local_id).parents == []


def test_a_damaged_parents_entry_is_set_aside_with_a_warning(store):
    record = store.new_record("generation", {"prompt": "x"})
    path = store.task_dir(record.local_id) / "task.toml"
    path.write_text(path.read_text() + '\n[[parents]]\nlocal_id = "a"\nimage = "two"\n')
    assert store.get(record.local_id) is None
    assert any("parents must be a list" in w for w in store.warnings)


async def test_the_workbench_records_the_requests_parents(sandbox, store):
    client = KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY))
    bench = Workbench(client, store, default_capabilities())
    try:
        parent = finished_task(store)
        source = resolve_image(store, f"{parent.local_id}:2")
        request = OmniRequest(prompt="<<<image_1>>> at night", images=[source.source], parents=[source.parent])
        record = await bench.submit(request)
        assert record.task_id is not None
        assert store.get(record.local_id).parents == [{"local_id": parent.local_id, "image": 2}]
        assert "parents" not in record.params  # lineage is ours, never sent
        assert "parents" not in sandbox.state.task(record.task_id).payload
    finally:
        await bench.aclose()
        await client.aclose()


def test_task_index_resolves_to_the_saved_file(store):
    parent = finished_task(store)
    folder = store.task_dir(parent.local_id)
    assert resolve_image(store, parent.local_id) == ImageInput(str(folder / "image-1.png"), (parent.local_id, 1))
    assert resolve_image(store, f"{parent.task_id}:2") == ImageInput(str(folder / "image-2.png"), (parent.local_id, 2))
    assert resolve_image(store, "ext-parent:2").parent == (parent.local_id, 2)


def test_files_and_urls_are_inputs_without_a_parent(store, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (400, 400)).save(photo)
    assert resolve_image(store, str(photo)) == ImageInput(str(photo))
    assert resolve_image(store, "https://example.com/a.png") == ImageInput("https://example.com/a.png")
    assert resolve_image(store, str(tmp_path / "missing.png")) == ImageInput(str(tmp_path / "missing.png"))


def test_an_unsaved_image_is_taken_by_url_until_it_expires(store):
    parent = finished_task(store, images=2, saved=1)
    assert resolve_image(store, f"{parent.local_id}:2") == ImageInput("https://cdn.example/1.png", (parent.local_id, 2))
    with pytest.raises(ImageRefError, match="never saved and its URL has expired"):
        resolve_image(store, f"{parent.local_id}:2", now=time.time() + 31 * DAY)


@pytest.mark.parametrize("suffix, message", [(":3", "has images 1 to 2 (got 3)"), (":0", "has images 1 to 2 (got 0)")])
def test_an_index_out_of_range_is_refused(store, suffix, message):
    parent = finished_task(store)
    with pytest.raises(ImageRefError, match=re.escape(message)):
        resolve_image(store, parent.local_id + suffix)


def test_a_task_without_images_or_unknown_is_refused(store):
    pending = store.new_record("generation", {"prompt": "still running"})
    with pytest.raises(ImageRefError, match=r"has no images \(status pending\)"):
        resolve_image(store, pending.local_id)
    with pytest.raises(ImageRefError, match=r"is not a \.jpg/\.png file, an http"):
        resolve_image(store, "nothing-like-this")
