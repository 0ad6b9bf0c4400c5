"""`kling-tui export --format html`: a self-contained contact sheet, checked by parsing it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_helpers import kling
from PIL import Image

from kling_tui.history.store import HistoryStore


class Sheet(HTMLParser):
    """What a browser would see: tags, the images they load, the links and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


def finished(store: HistoryStore, params: dict, images: int = 1, group: str | None = None, parents=()):
    record = store.new_record("generation", params, parents=parents)
    folder = store.task_dir(record.local_id)
    names = []
    for i in range(images):
        Image.new("RGB", (900, 600), (40 * i, 90, 160)).save(folder / f"image-{i + 1}.png")
        names.append(f"image-{i + 1}.png")
    return store.update(record.local_id, status="succeed", image_paths=names, units="1", group=group)


def test_html_export_is_a_folder_a_browser_opens_with_everything_escaped(tmp_path):
    hostile = '<script>alert("x")</script> & a "quoted" fox'
    with HistoryStore() as store:
        a = finished(store, {"prompt": "a red fox", "model_name": "kling-v1", "aspect_ratio": "1:1"}, 2, group="g1")
        b = finished(store, {"prompt": "a red fox", "model_name": "kling-v2", "aspect_ratio": "1:1"}, 1, group="g1")
        lone = finished(store, {"prompt": hostile, "image": "/home/someone/secret/ref.png", "api_key": "k"}, 1)
        child = finished(store, {"prompt": "the fox, wider"}, 1, parents=[(a.local_id, 2)])
    out = tmp_path / "sheet"
    run = kling("export", "--format", "html", "--out", str(out), auth="none")
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == str(out / "index.html")

    sheet = Sheet()
    sheet.feed((out / "index.html").read_text(encoding="utf-8"))
    text = "".join(sheet.text)
    # Every image is a thumbnail inside the folder: nothing points outside it.
    sources = [img["src"] for img in sheet.all("img")]
    assert len(sources) == 5
    for src in sources:
        assert not src.startswith(("/", "file:", "http")) and (out / src).is_file()
        with Image.open(out / src) as img:
            assert max(img.size) <= 512
    # Prompts and parameters beside each image; user text is text, never markup.
    assert hostile in text and not [t for t, _ in sheet.tags if t == "script"]
    assert "kling-v2" in text and "1:1" in text
    assert "ref.png" in text and "/home/someone" not in text and "api_key" not in text
    # The variant group is one section; the child task sits under its parent, linked to it.
    assert "Variant group g1 · 2 tasks" in text
    ids = [d["id"] for d in sheet.all("div") if d.get("id")]
    assert ids.index(f"t-{child.local_id}") == ids.index(f"t-{a.local_id}") + 1
    assert {"href": f"#t-{a.local_id}"} in sheet.all("a")
    assert {f"t-{x.local_id}" for x in (a, b, lone, child)} <= set(ids)


def test_html_export_needs_a_folder_and_other_formats_refuse_one(tmp_path):
    missing = kling("export", "--format", "html", auth="none")
    assert missing.code == 2 and "--out" in missing.stderr
    wrong = kling("export", "--format", "csv", "--out", str(tmp_path), auth="none")
    assert wrong.code == 2 and not Path(tmp_path / "index.html").exists()
    (tmp_path / "a-file").write_text("not a folder")
    blocked = kling("export", "--format", "html", "--out", str(tmp_path / "a-file"), auth="none")
    assert (
        blocked.code == 2 and "cannot write the contact sheet" in blocked.stderr and "Traceback" not in blocked.stderr
    )


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="no headless browser here (.ci/run installs Debian's chromium)")
def test_a_real_browser_opens_the_contact_sheet_and_loads_its_images(tmp_path):
    with HistoryStore() as store:
        finished(store, {"prompt": "a lighthouse in fog", "model_name": "kling-v1"}, 2)
    out = tmp_path / "sheet"
    assert kling("export", "--format", "html", "--out", str(out), auth="none").code == 0
    # The page itself reports what the browser made of it: the title, and how many images decoded.
    page = out / "index.html"
    probe = tmp_path / "probe.html"
    probe.write_text(
        '<iframe id="f" src="sheet/index.html"></iframe><script>'
        "document.getElementById('f').onload=function(){var d=this.contentDocument;"
        "var ok=[].filter.call(d.images,function(i){return i.complete&&i.naturalWidth>0}).length;"
        "document.title='loaded '+ok+' of '+d.images.length+': '+d.body.innerText.indexOf('a lighthouse in fog');};"
        "</script>",
        encoding="utf-8",
    )
    assert page.is_file()
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [
                BROWSER,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--allow-file-access-from-files",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    title = run.stdout.split("<title>", 1)[-1].split("</title>", 1)[0]
    assert title.startswith("loaded 2 of 2: "), (title, run.stderr[-2000:])
    assert int(title.rsplit(": ", 1)[1]) >= 0  # the prompt is in the page's text
