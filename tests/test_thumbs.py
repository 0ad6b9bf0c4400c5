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
