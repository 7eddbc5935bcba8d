"""A sweep's contact sheet and HTML gallery, made from its job folders.

    python -m dreamvid.gallery SWEEP_DIR [--webm] [--thumb-width PX]

A job is any folder under SWEEP_DIR with Hydra's `.hydra/overrides.yaml`. Each job is labelled with
the overrides whose values differ between jobs; the ones all jobs share are listed once. The page
links its videos by relative paths and carries its CSS inline, so the folder can be copied anywhere.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

import numpy as np

from . import files
from .images import save_image
from .errors import DreamvidError
from .sweep import ERROR_FILE, STATUS_FILE

SHEET = "contact_sheet.png"
PAGE = "index.html"
# In the page's <meta name="generator"> and the sheet's PNG text: a file of that name without it is the
# user's, and is never replaced (the gallery is written beside it)
GENERATOR = "dreamvid gallery"
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".gif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Contact sheet geometry, in pixels.
THUMB_WIDTH = 256
PAD = 8  # around and between cells
LINE = 18  # one label line
FONT_SCALE = 0.45
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
FAILED = (120, 24, 24)


@dataclass
class Job:
    num: int
    folder: str
    overrides: List[str]
    status: str = "ok"  # ok | failed
    output: Optional[str] = None
    error: Optional[str] = None
    ran: Dict[str, List[str]] = field(default_factory=dict)  # setting -> the values it ran with, where not as given
    seconds: Optional[float] = None
    started: float = 0.0  # when Hydra started it (its .hydra/overrides.yaml is written then)
    values: Dict[str, str] = field(default_factory=dict)  # override key -> value


def _split(override: str) -> Tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def _load_yaml(path: str):
    """A YAML file Hydra wrote into a job's folder (plain YAML), or None where it cannot be read."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except Exception:  # noqa: BLE001 - a damaged file only costs the job its details
        return None


def _select(data: Any, dotted: str, default: Any = None) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _default_output(folder: str) -> Optional[str]:
    """Where a job wrote its result when it left no job.json: its config's output, else the defaults."""
    cfg = _load_yaml(os.path.join(folder, ".hydra", "config.yaml"))
    out, mode = _select(cfg, "output"), _select(cfg, "mode", "zoom")
    if isinstance(out, str) and "${" in out:  # an interpolation (${hydra:runtime.output_dir}) of the job's own
        out = None
    if out:
        cwd = _select(_load_yaml(os.path.join(folder, ".hydra", "hydra.yaml")), "hydra.runtime.cwd", folder)
        out = os.path.join(str(cwd), os.path.expanduser(str(out)))
        return os.path.join(out, "grid.png") if os.path.isdir(out) else out
    return os.path.join(folder, "grid.png" if mode == "neuron" else "dream.mp4")


def _job_num(folder: str) -> Optional[int]:
    num = _select(_load_yaml(os.path.join(folder, ".hydra", "hydra.yaml")), "hydra.job.num")
    if num is None and os.path.basename(folder).isdigit():
        num = int(os.path.basename(folder))
    return None if num is None else int(num)


def collect_jobs(sweep_dir: str) -> List[Job]:
    """Every job under sweep_dir, by job number, with its status, output and differing values."""
    jobs: List[Job] = []
    for root, dirs, names in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".state"))
        overrides_file = os.path.join(root, ".hydra", "overrides.yaml")
        if not os.path.isfile(overrides_file):
            continue
        dirs[:] = []  # a job's own folders are not jobs
        status = {}
        if STATUS_FILE in names:
            try:
                with open(os.path.join(root, STATUS_FILE)) as f:
                    status = json.load(f)
            except (OSError, ValueError):
                status = {}
        overrides = _load_yaml(overrides_file)
        num = status.get("num", _job_num(root))
        job = Job(num=len(jobs) if num is None else int(num), folder=os.path.abspath(root),
                  overrides=[str(o) for o in (overrides or [])], seconds=status.get("seconds"),
                  started=os.path.getmtime(overrides_file))
        job.ran = {k: [str(v) for v in vs] for k, vs in (status.get("ran") or {}).items()}
        job.output = status.get("output") or _default_output(root)
        job.error = status.get("error")
        if ERROR_FILE in names and not job.error:
            with open(os.path.join(root, ERROR_FILE), errors="replace") as f:
                job.error = f.readline().strip() or "failed"
        if status.get("status") == "failed" or job.error:
            job.status, job.error = "failed", job.error or "failed"
        elif not (job.output and os.path.exists(job.output)):
            job.status, job.error = "failed", "no output: the job did not finish"
        jobs.append(job)
    jobs.sort(key=lambda j: j.num)
    return jobs


def varying(jobs: Sequence[Job]) -> Tuple[List[str], Dict[str, str]]:
    """(override keys whose values differ between jobs, {key: value} shared by all jobs)."""
    for job in jobs:
        job.values = {k: v + (f" (ran {', '.join(job.ran[k])})" if k in job.ran else "")
                      for k, v in (_split(o) for o in job.overrides)}
    keys = list(dict.fromkeys(k for job in jobs for k in job.values))
    differ = [k for k in keys if len({job.values.get(k) for job in jobs}) > 1]
    common = {k: jobs[0].values[k] for k in keys if k not in differ}
    return differ, common


# -- contact sheet ----------------------------------------------------------------------------------


def middle_frame_file(folder: str) -> str:
    """The middle one of a folder's frame pictures."""
    frames = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))
    if not frames:
        raise DreamvidError(f"no frames in {folder}")
    return os.path.join(folder, frames[len(frames) // 2])


def thumbnail_frame(path: str) -> np.ndarray:
    """The middle frame of a video (or the picture itself), (H, W, 3) uint8 RGB."""
    from .images import read_image
    from .video import read_frames

    if os.path.isdir(path):  # a folder of PNG frames
        return read_image(middle_frame_file(path))
    if path.lower().endswith(IMAGE_EXTS):
        return read_image(path)
    meta, frames = read_frames(path)
    middle = max(0, meta.frames // 2)
    frame = None
    for i, frame in enumerate(frames):
        if i >= middle:
            frames.close()
            break
    if frame is None:
        raise DreamvidError(f"no frame could be decoded from {path}")
    return frame


@dataclass
class Layout:
    """Where each job's thumbnail and label go on the sheet: a grid of cols x rows cells."""

    cols: int
    rows: int
    thumb_w: int
    thumb_h: int
    label_h: int
    pad: int = PAD

    @property
    def width(self) -> int:
        return self.cols * self.thumb_w + (self.cols + 1) * self.pad

    @property
    def height(self) -> int:
        return self.rows * (self.thumb_h + self.label_h) + (self.rows + 1) * self.pad

    def thumb_box(self, i: int) -> Tuple[int, int, int, int]:
        """(x, y, w, h) of cell i's thumbnail; cells fill rows left to right."""
        r, c = divmod(i, self.cols)
        return (self.pad + c * (self.thumb_w + self.pad), self.pad + r * (self.thumb_h + self.label_h + self.pad),
                self.thumb_w, self.thumb_h)

    def label_box(self, i: int) -> Tuple[int, int, int, int]:
        x, y, w, h = self.thumb_box(i)
        return x, y + h, w, self.label_h


def sheet_layout(n: int, aspect: float, lines: int, thumb_width: int = THUMB_WIDTH) -> Layout:
    """A near-square grid for n jobs; thumbnails thumb_width wide at aspect = height / width."""
    if n < 1:
        raise ValueError(f"a contact sheet needs at least one job, got {n}")
    cols = math.ceil(math.sqrt(n))
    return Layout(cols=cols, rows=math.ceil(n / cols), thumb_w=thumb_width,
                  thumb_h=max(1, round(thumb_width * aspect)), label_h=lines * LINE + PAD // 2)


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """img scaled to fit inside w x h, centred on the background."""
    import cv2

    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    box = np.full((h, w, 3), BACKGROUND, np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    box[y:y + nh, x:x + nw] = small
    return box


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """One line of text with its baseline at y, shortened with '...' to fit width."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    while len(text) > 4 and cv2.getTextSize(text, font, FONT_SCALE, 1)[0][0] > width - 4:
        text = text[:-4] + "..."
    cv2.putText(canvas, text, (x + 2, y), font, FONT_SCALE, TEXT, 1, cv2.LINE_AA)


def contact_sheet(jobs: Sequence[Job], keys: Sequence[str],
                  thumb_width: int = THUMB_WIDTH) -> Tuple[np.ndarray, Layout]:
    """One labelled thumbnail per job (failures as red cells), (H, W, 3) uint8 RGB, and its layout."""
    frames: List[Optional[np.ndarray]] = []
    for job in jobs:
        frame = None
        if job.status == "ok":
            try:
                frame = thumbnail_frame(job.output)  # type: ignore[arg-type]
            except (DreamvidError, OSError, ValueError) as e:
                job.status, job.error = "failed", f"unreadable output: {e}"
        frames.append(frame)
    aspects = [f.shape[0] / f.shape[1] for f in frames if f is not None]
    layout = sheet_layout(len(jobs), max(aspects) if aspects else 9 / 16, 1 + len(keys), thumb_width)
    sheet = np.full((layout.height, layout.width, 3), BACKGROUND, np.uint8)
    for i, (job, frame) in enumerate(zip(jobs, frames)):
        x, y, w, h = layout.thumb_box(i)
        if frame is not None:
            sheet[y:y + h, x:x + w] = _fit(frame, w, h)
        else:
            sheet[y:y + h, x:x + w] = FAILED
            _text(sheet, "FAILED", x, y + LINE, w)
            for j, line in enumerate(_wrap(job.error or "", w)[: max(0, h // LINE - 2)]):
                _text(sheet, line, x, y + (j + 2) * LINE, w)
        lx, ly, lw, _ = layout.label_box(i)
        _text(sheet, f"#{job.num}" + ("" if job.status == "ok" else "  failed"), lx, ly + LINE - 4, lw)
        for j, k in enumerate(keys):
            _text(sheet, f"{k}={job.values.get(k, '-')}", lx, ly + (j + 2) * LINE - 4, lw)
    return sheet, layout


def _wrap(text: str, width: int) -> List[str]:
    per_line = max(8, width // 8)  # Hershey simplex at FONT_SCALE is about 8 px per character
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > per_line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


# -- web page ---------------------------------------------------------------------------------------


CSS = """
body{margin:0;padding:1.5rem;background:#161616;color:#e8e8e8;font:15px/1.45 system-ui,sans-serif}
h1{margin:0 0 .3rem;font-size:1.4rem}h1 small{color:#999;font-weight:normal}
header p{margin:.2rem 0;color:#bbb}a{color:#8cb4ff}code{font-size:.9em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,30rem),1fr));gap:1rem;margin-top:1rem}
.job{margin:0;display:grid;grid-template-columns:minmax(0,3fr) minmax(9rem,2fr);gap:.8rem;
 background:#222;border-radius:6px;padding:.7rem;border-left:4px solid #3a7}
.job.failed{border-left-color:#c33;background:#2a1c1c}
.job video,.job img{width:100%;height:auto;display:block;background:#000;border-radius:3px}
.job h2{margin:0 0 .3rem;font-size:1rem}.job.failed h2{color:#f88}
.job dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:.1rem .6rem}
.job dt{color:#999}.job dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
.job .meta{margin:.5rem 0 0;color:#999;font-size:.85em}
.failure{min-height:6rem;display:flex;align-items:center;justify-content:center;padding:.5rem;
 background:#411;border-radius:3px;color:#fbb;font-family:ui-monospace,monospace;font-size:.85em;white-space:pre-wrap}
.sheet{max-width:100%;margin-top:.6rem;border-radius:3px}
"""


def _href(path: str, base: str) -> str:
    return quote(os.path.relpath(path, base).replace(os.sep, "/"))


def _media(job: Job, base: str, webm: bool) -> str:
    out = job.output or ""
    src = html.escape(_href(out, base))
    if out.lower().endswith(IMAGE_EXTS + (".gif",)):
        return f'<img src="{src}" alt="job {job.num}">'
    if os.path.isdir(out):  # PNG frames: the middle one, opening the folder
        middle = html.escape(_href(middle_frame_file(out), base))
        return f'<a href="{src}/"><img src="{middle}" alt="job {job.num}: middle frame"></a>'
    kind = {".mp4": ' type="video/mp4"', ".webm": ' type="video/webm"'}.get(os.path.splitext(out)[1].lower(), "")
    sources = [f'<source src="{src}"{kind}>']
    if webm:
        from .video import webm_copy

        sources.append(f'<source src="{html.escape(_href(webm_copy(out), base))}" type="video/webm">')
    return f'<video controls loop muted playsinline>{"".join(sources)}</video>'


def gallery_html(sweep_dir: str, jobs: Sequence[Job], keys: Sequence[str], common: Dict[str, str],
                 webm: bool = False, sheet_name: str = SHEET) -> str:
    """The page: one card per job, its video (or failure) beside the values that set it apart."""
    e = html.escape
    name = os.path.basename(os.path.normpath(sweep_dir))
    parent = os.path.basename(os.path.dirname(os.path.normpath(sweep_dir)))
    failed = sum(j.status != "ok" for j in jobs)
    summary = f"{len(jobs)} jobs, {len(jobs) - failed} ok" + (f", {failed} failed" if failed else "")
    shared = " ".join(o for o in (jobs[0].overrides if jobs else []) if _split(o)[0] in common)
    cards = []
    for job in jobs:
        rows = "".join(f"<dt>{e(k)}</dt><dd>{e(job.values.get(k, '-'))}</dd>" for k in keys)
        links = [f'<a href="{e(_href(os.path.join(job.folder, ".hydra", "config.yaml"), sweep_dir))}">config</a>']
        if job.status == "ok":
            media = _media(job, sweep_dir, webm and job.output.lower().endswith(".mp4"))  # type: ignore[union-attr]
            links.insert(0, f'<a href="{e(_href(job.output, sweep_dir))}">file</a>')  # type: ignore[arg-type]
        else:
            media = f'<div class="failure">{e(job.error or "failed")}</div>'
            if os.path.exists(os.path.join(job.folder, ERROR_FILE)):
                links.append(f'<a href="{e(_href(os.path.join(job.folder, ERROR_FILE), sweep_dir))}">error</a>')
        meta = ([f"{job.seconds:.1f} s"] if job.seconds is not None else []) + links
        status = "" if job.status == "ok" else " &middot; failed"
        cards.append(f'<figure class="job {job.status}" id="job-{job.num}">{media}<figcaption>'
                     f"<h2>#{job.num}{status}</h2><dl>{rows}</dl>"
                     f'<p class="meta">{" &middot; ".join(meta)}</p></figcaption></figure>')
    sheet = ""
    if os.path.exists(os.path.join(sweep_dir, sheet_name)):
        sheet = (f'<details><summary>contact sheet</summary>'
                 f'<img class="sheet" src="{e(quote(sheet_name))}" alt="contact sheet"></details>')
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dreamvid sweep {e(parent)}/{e(name)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>dreamvid sweep <small>{e(parent)}/{e(name)}</small></h1>
<p>{e(summary)}{' &middot; varying: ' + e(', '.join(keys)) if keys else ''}</p>
{f'<p>same for all: <code>{e(shared)}</code></p>' if shared else ''}
{sheet}
</header>
<main class="grid">
{chr(10).join(cards)}
</main>
</body>
</html>
"""


def write_gallery(sweep_dir: str, webm: bool = False, thumb_width: int = THUMB_WIDTH,
                  jobs: Optional[List[Job]] = None) -> Dict[str, str]:
    """Write SWEEP_DIR/contact_sheet.png and SWEEP_DIR/index.html; returns their paths.

    `jobs` (from collect_jobs) are updated in place: a job whose output cannot be read is failed.
    """
    sweep_dir = os.path.abspath(sweep_dir)
    jobs = collect_jobs(sweep_dir) if jobs is None else jobs
    if not jobs:
        raise DreamvidError(f"no sweep jobs under {sweep_dir} (folders with .hydra/overrides.yaml)")
    keys, common = varying(jobs)
    sheet, _ = contact_sheet(jobs, keys, thumb_width)
    paths = {"sheet": os.path.join(sweep_dir, SHEET), "html": os.path.join(sweep_dir, PAGE)}
    target = {key: _own_name(path) for key, path in paths.items()}
    written = {"sheet": save_image(target["sheet"], sheet, {"Software": GENERATOR}, allowed=_ours(target["sheet"]))}
    page = gallery_html(sweep_dir, jobs, keys, common, webm=webm, sheet_name=os.path.basename(written["sheet"]))
    tmp = files.temp_file(sweep_dir, PAGE)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        written["html"] = files.place(tmp, target["html"], _ours(target["html"]))
    except BaseException:
        files.remove(tmp)
        raise
    for key, path in written.items():
        if path != paths[key]:
            warnings.warn(f"{paths[key]} is not dreamvid's and is left as it is; the gallery's is {path}",
                          stacklevel=2)
    return written


def _own_name(path: str) -> str:
    """`path`, or where an earlier gallery went because a file of the user's has that name (index-2.html):
    the first of those names that is free or dreamvid's."""
    for n in range(1, files.KEPT_NAMES + 1):
        name = path if n == 1 else files.kept_name(path, n)
        if not os.path.lexists(name) or _ours(name) is not None:
            return name
    return path


def _ours(path: str) -> Optional[files.Identity]:
    """The identity of a gallery file dreamvid made at `path` (made again: replaced), None for anything else."""
    found = files.identity(path)
    if found is None or found.folder:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    return found if GENERATOR.encode() in head else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamvid.gallery",
                                     description="(Re)make a sweep's contact sheet and index.html.")
    parser.add_argument("sweep_dir", help="a sweep folder, e.g. multirun/2024-05-01/12-00-00")
    parser.add_argument("--webm", action="store_true", help="also make WebM copies for browsers without H.264")
    parser.add_argument("--thumb-width", type=int, default=THUMB_WIDTH, help="thumbnail width in pixels")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.sweep_dir):
        print(f"dreamvid: error: not a folder: {args.sweep_dir}", file=sys.stderr)
        return 2
    if args.thumb_width < 16:
        print(f"dreamvid: error: --thumb-width must be at least 16, got {args.thumb_width}", file=sys.stderr)
        return 2
    try:
        paths = write_gallery(args.sweep_dir, webm=args.webm, thumb_width=args.thumb_width)
    except DreamvidError as e:
        print(f"dreamvid: error: {e}", file=sys.stderr)
        return 2
    print(f"dreamvid: wrote {paths['sheet']}\ndreamvid: wrote {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
