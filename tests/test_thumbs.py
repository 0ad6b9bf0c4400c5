"""Thumbnails: made once and kept beside the image; huge images refused before decoding."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from kling_tui.history.thumbs import TooLarge, cached_thumbnail, load_small, thumbnail_path


def test_a_thumbnail_is_made_once_and_read_back_from_disk(tmp_path):
    image = tmp_path / "image-1.png"
    Image.new("RGB", (1600, 900), "teal").save(image)
    first = cached_thumbnail(image, 256)
    thumb = thumbnail_path(image, 256)
    assert thumb == tmp_path / ".thumbs" / "image-1.256.png" and thumb.is_file()
    assert first.size == (256, 144)
    # With the original unreadable, the cached copy is still served.
    os.utime(thumb, (image.stat().st_mtime + 10,) * 2)
    image.write_bytes(b"damaged")
    os.utime(image, (thumb.stat().st_mtime - 10,) * 2)
    assert cached_thumbnail(image, 256).size == (256, 144)


def test_a_newer_image_gets_a_new_thumbnail(tmp_path):
    image = tmp_path / "image-1.png"
    Image.new("RGB", (400, 400), "red").save(image)
    cached_thumbnail(image, 256)
    Image.new("RGB", (800, 400), "blue").save(image)
    os.utime(image, (thumbnail_path(image, 256).stat().st_mtime + 5,) * 2)
    again = cached_thumbnail(image, 256)
    assert again.size == (256, 128) and again.getpixel((0, 0)) == (0, 0, 255)


def test_a_folder_that_cannot_be_written_costs_only_the_cache(tmp_path):
    image = tmp_path / "image-1.png"
    Image.new("RGB", (300, 300), "red").save(image)
    (tmp_path / ".thumbs").write_text("a file where the folder would go")
    assert cached_thumbnail(image, 256).size == (256, 256)


def test_an_image_above_the_pixel_limit_is_refused_with_a_message(tmp_path):
    image = tmp_path / "huge.png"
    Image.new("RGB", (300, 200)).save(image)
    with pytest.raises(TooLarge, match=r"huge.png is too large to preview \(300x200 px"):
        load_small(image, 256, max_pixels=300 * 199)
    assert load_small(image, 256, max_pixels=300 * 200).size == (256, 171)


@pytest.mark.parametrize("mode", ["P", "RGBA", "L", "CMYK"])
def test_every_mode_comes_out_as_rgb_or_rgba(tmp_path, mode):
    image = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    Image.new(mode, (600, 300)).save(image)
    assert load_small(image, 128).mode in ("RGB", "RGBA")


def claimed_size_png(path, width, height):
    """A small PNG whose header claims `width` x `height`: what a decompression bomb looks like."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_a_huge_image_is_refused_from_its_header_alone(tmp_path):
    bomb = claimed_size_png(tmp_path / "bomb.png", 9000, 9000)
    with pytest.raises(TooLarge, match=r"9000x9000 px; the limit is 67 Mpx\). Open it in a viewer with o"):
        load_small(bomb, 256)
    with pytest.raises(TooLarge):
        cached_thumbnail(bomb, 256)
    assert not thumbnail_path(bomb, 256).exists()


async def test_the_preview_says_an_image_is_too_large_instead_of_decoding_it(sandbox):
    from kling_tui.config import load_settings
    from kling_tui.ui.app import make_app
    from tests.tui_helpers import sandbox_history, wait_for

    store = sandbox_history()
    record = store.new_record("generation", {"prompt": "a huge one", "n": 1})
    claimed_size_png(store.task_dir(record.local_id) / "image-1.png", 9000, 9000)
    store.update(record.local_id, status="succeed", image_paths=["image-1.png"])
    store.close()
    app = make_app(load_settings(), sandbox=sandbox, image_protocol="halfcell")
    async with app.run_test(size=(120, 36)) as pilot:
        message = app.preview.query_one("#preview-message")
        await wait_for(pilot, lambda: "too large to preview" in str(message.render()))
        assert app.preview.shown is None and app.is_running
