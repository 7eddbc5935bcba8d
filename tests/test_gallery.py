"""The contact sheet and the HTML gallery, on hand-made job folders; the page checked in a real browser."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from typing import Dict, List, Sequence

import numpy as np
import pytest

from dreamvid import gallery
from dreamvid.gallery import collect_jobs, sheet_layout, varying, write_gallery
from dreamvid.video import Encoder, probe

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 60), (40, 60, 220)


def make_job(sweep: str, num: int, overrides: Sequence[str], colours=(RED, GREEN, BLUE), *,
             error: str = "", size=(64, 48)) -> str:
    """A job folder as a sweep leaves it: Hydra's .hydra/ files, a video of solid colours, job.json."""
    folder = os.path.join(sweep, str(num))
    os.makedirs(os.path.join(folder, ".hydra"))
    with open(os.path.join(folder, ".hydra", "overrides.yaml"), "w") as f:
        f.write("".join(f"- {o}\n" for o in overrides))
    with open(os.path.join(folder, ".hydra", "hydra.yaml"), "w") as f:
        f.write(f"hydra:\n  job:\n    num: {num}\n")
    with open(os.path.join(folder, ".hydra", "config.yaml"), "w") as f:
        f.write("mode: zoom\noutput: null\n")
    out = os.path.join(folder, "dream.mp4")
    if error:
        with open(os.path.join(folder, "error.txt"), "w") as f:
            f.write(error + "\n")
    else:
        w, h = size
        with Encoder(out, w, h, 8) as enc:
            for c in colours:
                enc.write(np.full((h, w, 3), c, np.uint8))
    status = {"num": num, "overrides": list(overrides), "status": "failed" if error else "ok",
              "output": None if error else out, "error": error or None, "seconds": 1.5}
    with open(os.path.join(folder, "job.json"), "w") as f:
        json.dump(status, f)
    return folder


@pytest.fixture
def sweep(tmp_path):
    """Three jobs that differ in seed and layers; the second failed."""
    d = str(tmp_path / "multirun" / "2024-01-01" / "12-00-00")
    make_job(d, 0, ["debug=tiny", "seed=1", "dream.layers=[blocks.4]"])
    make_job(d, 1, ["debug=tiny", "seed=2", "dream.layers=[blocks.4]"], error="dream.octaves=0 must be at least 1")
    make_job(d, 2, ["debug=tiny", "seed=3", "dream.layers=[blocks.10]"], colours=(BLUE, BLUE, RED))
    return d


def test_jobs_are_found_in_order_with_status_and_differing_values(sweep):
    jobs = collect_jobs(sweep)
    assert [j.num for j in jobs] == [0, 1, 2]
    assert [j.status for j in jobs] == ["ok", "failed", "ok"]
    assert "at least 1" in jobs[1].error
    keys, common = varying(jobs)
    assert keys == ["seed", "dream.layers"] and common == {"debug": "tiny"}
    assert jobs[2].values["dream.layers"] == "[blocks.10]"


def test_a_job_without_output_counts_as_failed(sweep):
    os.remove(os.path.join(sweep, "2", "dream.mp4"))
    os.remove(os.path.join(sweep, "2", "job.json"))  # as a job killed mid-way leaves it
    job = collect_jobs(sweep)[2]
    assert job.status == "failed" and "did not finish" in job.error


def test_layout_arithmetic():
    lay = sheet_layout(5, 0.75, lines=3, thumb_width=100)
    assert (lay.cols, lay.rows, lay.thumb_h, lay.label_h) == (3, 2, 75, 3 * 18 + 4)
    assert lay.width == 3 * 100 + 4 * 8 and lay.height == 2 * (75 + 58) + 3 * 8
    assert lay.thumb_box(4) == (8 + 108, 8 + 75 + 58 + 8, 100, 75)
    assert lay.label_box(4) == (116, 149 + 75, 100, 58)
    assert sheet_layout(1, 0.5, 1).cols == 1 and sheet_layout(4, 0.5, 1).cols == 2
    with pytest.raises(ValueError):
        sheet_layout(0, 0.5, 1)


def test_contact_sheet_shows_the_middle_frame_labels_and_failures(sweep):
    jobs = collect_jobs(sweep)
    keys, _ = varying(jobs)
    sheet, lay = gallery.contact_sheet(jobs, keys, thumb_width=80)
    assert sheet.shape == (lay.height, lay.width, 3) and (lay.cols, lay.rows) == (2, 2)

    def centre(i):
        x, y, w, h = lay.thumb_box(i)
        return sheet[y + h // 2, x + w // 2].astype(int)

    assert np.abs(centre(0) - GREEN).max() < 30  # the middle of red, green, blue
    assert np.abs(centre(2) - BLUE).max() < 30  # the middle of blue, blue, red
    assert np.abs(centre(1) - gallery.FAILED).max() < 5
    labels = []
    for i in range(3):
        x, y, w, h = lay.label_box(i)
        region = sheet[y:y + h, x:x + w]
        assert (region.max(axis=2) > 150).sum() > 50  # text was drawn
        labels.append(region)
    assert not np.array_equal(labels[0], labels[2])


def test_gallery_page_links_relative_files_only(sweep):
    paths = write_gallery(sweep)
    page = open(paths["html"], encoding="utf-8").read()
    assert page.count("<video controls loop muted playsinline>") == 2
    assert '<source src="0/dream.mp4" type="video/mp4">' in page
    assert "job-1" in page and "at least 1" in page and 'class="job failed"' in page
    assert "same for all: <code>debug=tiny</code>" in page and "[blocks.10]" in page
    links = _links(page)
    assert links and all(not re.match(r"^[a-z]+:|^/", u) for u in links), links
    assert all(os.path.exists(os.path.join(sweep, u)) for u in links), links
    assert "<script" not in page and "<link" not in page  # no external CSS or code


def test_a_job_that_wrote_png_frames_shows_its_middle_frame_linking_the_folder(sweep):
    folder = make_job(sweep, 3, ["debug=tiny", "seed=4", "dream.layers=[blocks.4]"])
    frames = os.path.join(folder, "frames")
    with Encoder(frames, 32, 24, 8) as enc:
        for c in (RED, GREEN, BLUE):
            enc.write(np.full((24, 32, 3), c, np.uint8))
    with open(os.path.join(folder, "job.json")) as f:
        status = json.load(f)
    with open(os.path.join(folder, "job.json"), "w") as f:
        json.dump(dict(status, output=frames), f)
    page = open(write_gallery(sweep)["html"], encoding="utf-8").read()
    assert '<a href="3/frames/"><img src="3/frames/frame_000001.png"' in page
    assert page.count("<video ") == 2  # the folder is not offered as a video
    assert all(os.path.exists(os.path.join(sweep, u)) for u in _links(page))


def test_gallery_command_regenerates_and_makes_webm(sweep):
    r = subprocess.run([sys.executable, "-m", "dreamvid.gallery", sweep, "--webm", "--thumb-width", "64"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("dreamvid: wrote") == 2 and not r.stderr, r.stderr
    assert cv2_size(os.path.join(sweep, "contact_sheet.png")) == (2 * 64 + 3 * 8, 2 * (48 + 58) + 3 * 8)
    page = open(os.path.join(sweep, "index.html"), encoding="utf-8").read()
    assert '<source src="2/dream.webm" type="video/webm">' in page
    meta = probe(os.path.join(sweep, "2", "dream.webm"))
    assert meta.codec == "vp9" and meta.frames == 3 and meta.size == (64, 48)
    assert gallery.main([os.path.dirname(sweep)]) == 0  # the jobs are found a level further down
    empty = os.path.join(sweep, "empty")
    os.makedirs(empty)
    assert gallery.main([empty]) == 2
    assert gallery.main([os.path.join(sweep, "nope")]) == 2


def cv2_size(path: str):
    import cv2

    h, w = cv2.imread(path).shape[:2]
    return w, h


# -- the page in a real browser ---------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: List[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def _links(page: str) -> List[str]:
    p = _Links()
    p.feed(page)
    return p.urls


# Recorded on the elements themselves, read back from the DOM chromium dumps: for each <video>,
# what it chose and whether it got to decoded frames; for each <source>, whether that file alone
# plays (a detached video element per source), so a fallback source is checked too.
PROBE = """<script>
const mp4 = 'video/mp4; codecs="avc1.42E01E"', webm = 'video/webm; codecs="vp9"';
document.body.dataset.mp4 = document.createElement('video').canPlayType(mp4);
document.body.dataset.webm = document.createElement('video').canPlayType(webm);
const record = (el, v) => { el.dataset.readystate = v.readyState; el.dataset.duration = v.duration;
  el.dataset.error = v.error ? v.error.code : ''; el.dataset.current = v.currentSrc; };
const videos = [...document.querySelectorAll('video')];
for (const v of videos) v.addEventListener('loadeddata', () => { v.dataset.loaded = 'yes'; });
const alone = [...document.querySelectorAll('video source')].map(s => {
  const t = document.createElement('video'); t.muted = true; t.preload = 'auto';
  t.addEventListener('loadeddata', () => { s.dataset.loaded = 'yes'; }); t.src = s.src; return [s, t]; });
setInterval(() => { videos.forEach(v => record(v, v)); alone.forEach(([s, t]) => record(s, t)); }, 100);
</script>"""


def chromium_or_skip() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it first")
    return CHROMIUM


def _chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)


def browser_check(sweep_dir: str, screenshot: str) -> Dict[str, object]:
    """Open a sweep's index.html in headless chromium; every video must reach decoded frames.

    Returns what the page reported: body flags, and per video / source its attributes.
    """
    page = open(os.path.join(sweep_dir, "index.html"), encoding="utf-8").read()
    probe_page = os.path.join(sweep_dir, "_probe.html")  # beside the page, so its relative links hold
    with open(probe_page, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", PROBE + "\n</body>"))
    try:
        r = _chromium("--virtual-time-budget=8000", "--dump-dom", "file://" + probe_page)
    finally:
        os.remove(probe_page)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    body = _attrs(re.search(r"<body[^>]*>", dom).group(0))
    videos = [_attrs(m) for m in re.findall(r"<video [^>]*>", dom)]
    sources = [_attrs(m) for m in re.findall(r"<source [^>]*>", dom)]
    r = _chromium("--hide-scrollbars", "--window-size=1200,900", "--virtual-time-budget=8000",
                  f"--screenshot={screenshot}", "file://" + os.path.join(sweep_dir, "index.html"))
    assert r.returncode == 0 and os.path.getsize(screenshot) > 10_000, r.stderr[-2000:]
    return {"body": body, "videos": videos, "sources": sources}


def _attrs(tag: str) -> Dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def assert_all_play(report: Dict[str, object], n_videos: int) -> None:
    videos, sources = report["videos"], report["sources"]
    assert len(videos) == n_videos, report
    for v in videos:
        assert v.get("data-loaded") == "yes" and int(v["data-readystate"]) >= 2, v
        assert float(v["data-duration"]) > 0 and not v["data-error"], v
    for s in sources:
        assert s.get("data-loaded") == "yes" and float(s["data-duration"]) > 0, s


def test_gallery_plays_in_a_real_browser(sweep, tmp_path):
    write_gallery(sweep, webm=True)
    moved = str(tmp_path / "copied elsewhere")
    shutil.copytree(sweep, moved)  # relative links: the folder works wherever it is copied
    report = browser_check(moved, str(tmp_path / "page.png"))
    assert report["body"]["data-mp4"] == "probably", report["body"]  # Debian's chromium plays H.264 too
    assert_all_play(report, n_videos=2)
    assert len(report["sources"]) == 4  # an mp4 and its WebM copy per playable job, each played alone


def test_a_page_or_sheet_of_the_users_in_the_sweep_folder_is_kept_and_the_gallery_written_beside(sweep):
    mine = os.path.join(sweep, "index.html")
    with open(mine, "w") as f:
        f.write("<p>my notes on this sweep</p>")
    with pytest.warns(UserWarning, match="index.html is not dreamvid's and is left as it is"):
        made = write_gallery(sweep)
    assert made["html"] == os.path.join(sweep, "index-2.html") and open(mine).read() == "<p>my notes on this sweep</p>"
    again = write_gallery(sweep)  # made again: its own files are replaced, the user's still kept
    assert again == {"sheet": os.path.join(sweep, "contact_sheet.png"), "html": os.path.join(sweep, "index-2.html")}
    assert 'src="contact_sheet.png"' in open(again["html"]).read()
