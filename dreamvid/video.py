"""Video and frame-sequence I/O through ffmpeg: the only module that talks to ffmpeg.

Writing: `Encoder`. Reading: `probe` (frame count, exact rate, duration, size, audio) and
`read_frames` (metadata, then a generator of frames), of a video file or of a folder of pictures (one
frame each, in natural order, at a rate given). Frames are (H, W, 3) uint8 RGB arrays.
Outputs are written under a temporary name and renamed only when complete, so an interrupted run
never leaves a file that looks finished.
"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import tempfile
import warnings
from array import array
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import files
from .images import STILL_EXTS, encode_png, exif_orientation, read_image, write_image
from .errors import DreamvidError

# The container each video extension is written in; mp4 and mov start playing before fully loaded.
CONTAINERS = {".mp4": ["-movflags", "+faststart", "-f", "mp4"], ".mov": ["-movflags", "+faststart", "-f", "mov"],
              ".mkv": ["-f", "matroska"]}
VIDEO_EXTS = tuple(CONTAINERS)
# Files that are clips whatever else ffmpeg could make of them (a zoom's input must be one picture)
CLIP_EXTS = VIDEO_EXTS + (".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".m2ts", ".3gp",
                          ".ogv")
SCRATCH_NAME = "output.partial"  # an output being encoded, in the scratch folder of a render (its checkpoint's)
GIF_MAX_FPS = 50  # a GIF frame lasts a whole number of 1/100 s, and browsers play 1/100 s as 1/10 s
# A video stream starting less than this after its file is taken to start with it (its audio is copied,
# which is precise to about a packet, ~20 ms, anyway); later, the audio is cut from the first frame on.
START_TOLERANCE = 0.02
FRAME_NAME = "frame_{:06d}.png"  # the frames of a PNG-folder output
FRAME_FILE = re.compile(r"frame_\d{6,}\.png")
# The pictures a folder of frames may hold (anything else in it is left out)
PICTURE_EXTS = STILL_EXTS + (".bmp", ".tif", ".tiff")
PICTURE_READERS = 4  # threads reading a folder's pictures ahead (a 4K PNG takes 0.2 s on one core)
# Audio codecs an mp4 holds as they are; anything else (opus, vorbis, pcm, flac...) is re-encoded to aac.
MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3")
# ffmpeg runs in its own session: a Ctrl-C typed at the terminal reaches dreamvid, which stops after
# the current frame and finishes the files, not ffmpeg, which would die mid-stream.
OWN_SESSION = {"start_new_session": True}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def output_kind(path: str) -> str:
    """mp4 | gif | png (a folder of numbered PNG frames) | image (one still: .png, .jpg, .webp), from the
    output path."""
    ext = os.path.splitext(path.rstrip("/"))[1].lower()
    if path.endswith(("/", os.sep)) or ext == "" or os.path.isdir(path):
        return "png"
    if ext in VIDEO_EXTS:
        return "mp4"
    if ext == ".gif":
        return "gif"
    if ext in STILL_EXTS:
        return "image"
    raise DreamvidError(f"unsupported output extension {ext!r}: use .mp4, .gif, a folder for PNG frames, "
                        f"or {'/'.join(STILL_EXTS)} for one still")


def fps_arg(fps: Union[float, str, Fraction]) -> str:
    """ffmpeg's rate argument: exact fractions (30000/1001) stay exact."""
    if isinstance(fps, str):
        return fps
    f = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    return f"{f.numerator}/{f.denominator}"


class Encoder:
    """Streams frames into an mp4 (H.264, yuv420p), a GIF, or a folder of PNG frames; or writes one
    still picture (its metadata in a PNG's text chunks or a JPEG's comment).

    Use as a context manager: a clean exit moves the finished file into place; an exception removes
    the partial file. The partial file is a new file of the Encoder's own: in `scratch` (a folder of
    dreamvid's, such as a render's checkpoint folder) or, without one, beside the output under a name
    created exclusively, so that no file of anybody else's is ever written over. The finished file
    replaces only what was at `path` when the Encoder opened, and only with overwrite (`files.place`):
    `finish` says where it went. `audio` muxes the audio of that media file, from `audio_start`
    seconds and trimmed to the frames written, into an mp4 output. `lossless` writes the video stream
    losslessly (FFV1 RGB in Matroska, whatever the name) for intermediate files that are read again.
    """

    def __init__(self, path: str, width: int, height: int, fps: Union[float, str, Fraction], *,
                 audio: Optional[str] = None, audio_start: float = 0.0,
                 metadata: Optional[Dict[str, str]] = None, overwrite: bool = False, crf: int = 18,
                 lossless: bool = False, scratch: Optional[str] = None):
        if width < 1 or height < 1:
            raise DreamvidError(f"frame size must be positive, got {width}x{height}")
        self.path, self.kind = path.rstrip("/") or path, output_kind(path)
        self.width, self.height, self.fps = int(width), int(height), fps
        self.audio, self.audio_start = audio, audio_start
        self.metadata, self.overwrite, self.crf = metadata or {}, overwrite, crf
        self.lossless, self.scratch = lossless, scratch
        if lossless and self.kind != "mp4":
            raise ValueError(f"lossless output is a video file, not {path}")
        self.tmp: Optional[str] = None
        self.count = 0
        self._replacing: Optional[files.Identity] = None  # what overwrite=true may replace at `path`
        self._proc: Optional[subprocess.Popen] = None
        self._log = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "Encoder":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()

    def open(self) -> None:
        if os.path.lexists(self.path):
            self._check_replaceable()
            self._replacing = files.identity(self.path)
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise DreamvidError(f"cannot create output folder {folder}: {e.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise DreamvidError(f"output folder is not writable: {folder}")
        self.tmp = self._new_temp()
        if self.kind in ("png", "image"):
            return
        rate = float(Fraction(fps_arg(self.fps)))
        if self.kind == "gif" and rate > GIF_MAX_FPS:
            warnings.warn(f"a GIF's frame delays are in 1/100 s: fps={rate:g} plays at {GIF_MAX_FPS} frames/s at "
                          f"most (browsers slow delays under 2/100 s to 1/10 s); use .mp4 for a faster rate",
                          stacklevel=3)
        self._log = tempfile.TemporaryFile()  # ffmpeg's complaints, read when it fails; never a named file
        self._proc = subprocess.Popen(self._command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log, **OWN_SESSION)

    def _new_temp(self) -> str:
        """A partial file (a folder, for PNG frames) of this Encoder's own."""
        name = os.path.basename(self.path)
        try:
            if self.scratch is not None:  # dreamvid's own folder: a partial file there is a killed render's
                tmp = os.path.join(self.scratch, SCRATCH_NAME)
                files.remove(tmp)
                if self.kind == "png":
                    os.mkdir(tmp)
                return tmp
            folder = os.path.dirname(os.path.abspath(self.path))
            return files.temp_folder(folder, name) if self.kind == "png" else files.temp_file(folder, name)
        except OSError as e:
            raise DreamvidError(f"cannot write {self.path}: {e.strerror}") from None

    def _command(self) -> List[str]:
        w, h = self.width, self.height
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", fps_arg(self.fps), "-i", "-"]
        if self.kind == "gif":
            # One palette for the whole clip, generated from its own frames, keeps colours faithful.
            return cmd + ["-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=full[p];"
                          "[b][p]paletteuse=dither=sierra2_4a", "-loop", "0", "-f", "gif", self.tmp]
        if self.lossless:
            return cmd + ["-c:v", "ffv1", "-pix_fmt", "bgr0", "-f", "matroska", self.tmp]
        vf = []
        if w % 2 or h % 2:
            # yuv420p needs even sides; pad one replicated pixel rather than rescale the picture.
            warnings.warn(f"{w}x{h} has an odd side; the mp4 is padded to "
                          f"{w + w % 2}x{h + h % 2} (yuv420p needs even sizes)", stacklevel=3)
            vf = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:0:0,fillborders=right=1:bottom=1:mode=smear"]
        meta = []
        for k, v in self.metadata.items():
            meta += ["-metadata", f"{k}={v}"]
        # yuv420p and faststart: the mp4 plays in every browser and starts before it is fully loaded.
        return cmd + vf + ["-c:v", "libx264", "-preset", "medium", "-crf", str(self.crf), "-pix_fmt", "yuv420p"] \
            + meta + self._container() + [self.tmp]  # type: ignore[list-item]

    def _container(self, path: Optional[str] = None) -> List[str]:
        return CONTAINERS.get(os.path.splitext(path or self.path)[1].lower(), CONTAINERS[".mp4"])

    def _check_replaceable(self) -> None:
        """An existing output may be replaced only with overwrite=true, and a folder only when it holds
        nothing but dreamvid's frames (an existing folder is always a PNG-folder output)."""
        if not self.overwrite:
            raise DreamvidError(f"output exists: {self.path} (pass overwrite=true to replace it, "
                                f"or choose another output=)")
        folder = os.path.isdir(self.path) and not os.path.islink(self.path)
        if self.kind == "png" and not folder:
            raise DreamvidError(f"output {self.path} is a file, not a folder of frames: choose another output=")
        if folder and self.kind != "png":
            raise DreamvidError(f"output {self.path} is a folder, not a {self.kind} file: choose another output=")
        if folder:
            others = sorted(n for n in os.listdir(self.path) if not FRAME_FILE.fullmatch(n))
            if others:
                more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                raise DreamvidError(f"output folder {self.path} holds files dreamvid did not write "
                                    f"({', '.join(others[:3])}{more}); overwrite=true replaces only a folder of "
                                    f"dreamvid frames: choose another output=")

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.height}, {self.width}, 3) uint8, got {frame.shape} {frame.dtype}")
        assert self.tmp is not None, "encoder is not open"
        if self.kind == "image":
            if self.count:
                raise DreamvidError(f"{self.path} is one picture: a second frame needs .mp4, .gif or a folder")
            write_image(self.tmp, frame, self.metadata, ext=os.path.splitext(self.path)[1], name=self.path)
        elif self.kind == "png":
            name = os.path.join(self.tmp, FRAME_NAME.format(self.count))
            try:
                with open(name, "wb") as f:  # encoded in memory: a full disk is an OSError, with no libpng noise
                    f.write(encode_png(frame))
            except OSError as e:
                full = e.errno == errno.ENOSPC
                raise DreamvidError(f"cannot write {name}: {'the disk is full' if full else e.strerror}") from None
        else:
            assert self._proc is not None and self._proc.stdin is not None, "encoder is not open"
            try:
                self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except (BrokenPipeError, OSError):
                raise DreamvidError(f"ffmpeg stopped while writing {self.path}: {self._ffmpeg_error()}") from None
        self.count += 1

    def finish(self, into: Optional[str] = None) -> str:
        """Close the stream and move the finished output into place; returns where it went: its path, or
        the name beside it that `files.place` chose because something else took the path meanwhile.

        into: a path in dreamvid's own folder to finish into instead (a stopped render's partial video),
        where whatever is there is replaced.
        """
        if self.count == 0:
            self.abort()
            raise DreamvidError(f"no frames were produced for {self.path}")
        assert self.tmp is not None
        if self._proc is not None:
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            rc = self._proc.wait()
            if rc != 0:
                err = self._ffmpeg_error()
                self.abort()
                raise DreamvidError(f"ffmpeg failed writing {self.path}: {err}")
            self._proc = None
            self._close_log()
            if self.audio and self.kind == "mp4" and not self.lossless:
                self._mux_audio(into)
        try:
            if into is not None:
                files.remove(into)
                files.replace(self.tmp, into)
                return into
            # on the disk before the render's checkpoint is removed
            return files.place(self.tmp, self.path, self._replacing if self.overwrite else None, _discard_frames)
        except OSError as e:
            self.abort()
            raise DreamvidError(f"cannot move the finished {self.path} into place: {e.strerror or e}") from None
        finally:
            self.tmp = None

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial output."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                try:
                    self._proc.stdin.close()
                except OSError:  # the pipe is broken once ffmpeg is gone
                    pass
            self._proc = None
        self._close_log()
        if self.tmp is not None:
            files.remove(self.tmp)
            self.tmp = None

    def _mux_audio(self, into: Optional[str]) -> None:
        """Add the audio to the finished video, cut to its length.

        A second, quick pass: only then is the frame count known, and a slow dream never leaves
        ffmpeg buffering a whole soundtrack while it waits for frames. Audio the mp4 container holds
        is copied (at packet precision: about 20 ms); other codecs, or a start offset, are re-encoded
        to aac, cut to the sample.
        """
        assert self.tmp is not None
        codec = audio_codec(self.audio)  # type: ignore[arg-type]
        if codec is None:
            warnings.warn(f"{self.audio} has no audio stream; {self.path} is silent", stacklevel=3)
            return
        seconds = Fraction(self.count) / Fraction(fps_arg(self.fps))
        copy = codec in MP4_AUDIO and self.audio_start == 0
        if self.scratch is not None:
            muxed = self.tmp + ".mux"
        else:
            muxed = files.temp_file(os.path.dirname(self.tmp), os.path.basename(self.path))
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", self.tmp,
               "-ss", f"{self.audio_start:.6f}", "-t", f"{float(seconds):.6f}", "-i", self.audio,
               "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "0", "-c:v", "copy"]
        cmd += ["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "192k"]
        cmd += self._container(into) + [muxed]
        proc = subprocess.run(cmd, capture_output=True, text=True, **OWN_SESSION)
        if proc.returncode != 0:
            files.remove(muxed)
            self.abort()
            raise DreamvidError(f"ffmpeg failed adding the audio of {self.audio} to {self.path}: "
                                f"{_ffmpeg_complaint(proc.stderr)}")
        os.replace(muxed, self.tmp)

    # -- helpers -------------------------------------------------------------------------------
    def _ffmpeg_error(self) -> str:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._log is None:
            return "unknown error"
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        if any("No space left" in ln for ln in lines):
            return "the disk is full"
        return lines[-1] if lines else "unknown error"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _discard_frames(folder: str) -> None:
    """Remove an earlier PNG-folder output that overwrite=true replaces: its frames only, then the folder
    if nothing else appeared in it."""
    for name in os.listdir(folder):
        if FRAME_FILE.fullmatch(name):
            os.remove(os.path.join(folder, name))
    try:
        os.rmdir(folder)
    except OSError:
        pass


def audio_codec(path: str) -> Optional[str]:
    """The codec of a media file's first audio stream, or None when it has none."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path], capture_output=True, text=True,
                          **OWN_SESSION)
    m = re.search(r"Stream #\d+:\d+\S*: Audio: (\w+)", proc.stderr)
    return m.group(1) if m else None


def probe_metadata(path: str) -> Dict[str, str]:
    """The container's metadata tags (e.g. the embedded config in `comment`)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path, "-f", "ffmetadata", "-"],
                          capture_output=True, text=True)
    tags: Dict[str, str] = {}
    key = None
    for line in proc.stdout.splitlines():
        if line.startswith(";"):
            continue
        if key is not None and tags[key].endswith("\\"):
            tags[key] = tags[key][:-1] + "\n" + line
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            tags[key] = value
    return {k: v.replace("\\=", "=").replace("\\;", ";").replace("\\#", "#").replace("\\\\", "\\")
            for k, v in tags.items()}


def config_metadata(config: dict) -> Dict[str, str]:
    return {"comment": "dreamvid config: " + json.dumps(config, sort_keys=True, separators=(",", ":"))}


# -- reading ------------------------------------------------------------------------------------
# `probe` reads the container once without decoding (`-c copy` into ffmpeg's framecrc muxer, which
# lists every packet with its timestamps); `read_frames` then decodes through one ffmpeg pipe, a frame
# at a time, so memory stays flat however long the clip is.

# Frame rates that timestamps rounded to the container's clock (webm/mkv: 1 ms) are snapped to.
_NTSC = tuple(Fraction(k * 1000, 1001) for k in (24, 30, 48, 60, 120, 240))
_STANDARD = _NTSC + tuple(Fraction(k) for k in (8, 10, 12, 15, 24, 25, 30, 48, 50, 60, 90, 100, 120, 240))


@dataclass(frozen=True)
class VideoMeta:
    """What `probe` learns about a clip. `frames` and `fps` are what `read_frames` delivers."""

    path: str
    width: int  # as displayed: a rotation tag of +-90 degrees swaps the stored sides
    height: int
    fps: str  # exact rate as a fraction string, "30000/1001"; the average rate for a vfr clip
    frames: int  # frames read_frames yields at `fps`
    duration: float  # seconds of video, frames / fps
    codec: str = ""
    vfr: bool = False  # variable frame rate: read_frames resamples it to `fps` (duration kept)
    has_audio: bool = False
    audio_codec: Optional[str] = None
    audio_duration: Optional[float] = None
    rotation: int = 0
    sar: str = "1/1"  # the stored pixels' aspect ratio; width is the displayed one
    start: float = 0.0  # seconds from the file's start to the first frame: where its audio is taken from
    truncated: Optional[str] = None  # ffmpeg's complaint when the file ends before its index says
    indexed_frames: Optional[int] = None  # for a truncated file: about how many frames its index promises
    pictures: Tuple[str, ...] = ()  # a folder of frames: its pictures, in order (no audio; the rate was given)

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.width, self.height


class TruncatedVideo(DreamvidError):
    """Decoding stopped early; `frames` frames were delivered before it did."""

    def __init__(self, message: str, frames: int, expected: int):
        super().__init__(message)
        self.frames, self.expected = frames, expected


def _ffmpeg_complaint(text: str) -> str:
    """The most telling line of ffmpeg's stderr, without its `[module @ 0x...]` prefix."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Press [q]", "Last message repeated"))]
    for ln in lines:
        if any(w in ln.lower() for w in ("partial file", "invalid data", "no such file", "permission denied")):
            return ln
    return lines[-1] if lines else "unknown error"


def _snap_rate(measured: Fraction, reported: Optional[str], tolerance: float) -> Fraction:
    """The exact rate behind one measured from rounded timestamps: ffmpeg's own guess, or a standard rate."""
    candidates: List[Fraction] = []
    if reported:
        try:
            r = Fraction(reported.rstrip("k")) * (1000 if reported.endswith("k") else 1)
            k = round(float(r) * 1.001)
            # ffmpeg prints 29.97 for 30000/1001: take the NTSC rate it abbreviates
            candidates.append(Fraction(k * 1000, 1001) if abs(float(r) - k / 1.001) < 0.006 else r)
        except (ValueError, ZeroDivisionError):
            pass
    candidates += sorted(_STANDARD, key=lambda c: abs(c - measured))
    for c in candidates:
        if abs(float(c - measured)) <= tolerance * float(measured):
            return c
    return measured.limit_denominator(1001)


def _ratio(text: str) -> Fraction:
    """framecrc's sample aspect ratio, "num/den"; unknown (0/1) or unreadable means square pixels."""
    try:
        r = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return Fraction(1)
    return r if r > 0 else Fraction(1)


def _discarded(extra_columns: List[str]) -> bool:
    """A packet the decoder drops (framecrc's flags column F=0x.. has AV_PKT_FLAG_DISCARD): the pre-roll
    before an mp4 edit list's start, in a clip cut without re-encoding, or an encoder's priming samples."""
    flags = next((c.strip() for c in extra_columns if c.strip().startswith("F=")), "F=0")
    return bool(int(flags[2:], 16) & 0x4)


def picture_files(folder: str) -> List[str]:
    """The pictures in `folder` in natural order (frame_2 before frame_10); hidden files and others left out."""
    def natural(name: str) -> list:
        return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]

    names = [n for n in os.listdir(folder) if not n.startswith(".")
             and os.path.splitext(n)[1].lower() in PICTURE_EXTS and os.path.isfile(os.path.join(folder, n))]
    return [os.path.join(folder, n) for n in sorted(names, key=lambda n: (natural(n), n))]


def _picture_size(path: str) -> Tuple[int, int]:
    """(width, height) of a picture as `read_image` delivers it (upright), from its header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - what PIL cannot open (a float TIFF, a huge picture), OpenCV may
        frame = read_image(path, "frame")
        return frame.shape[1], frame.shape[0]
    return (h, w) if exif_orientation(path) >= 5 else (w, h)


def _probe_folder(path: str, fps: Union[float, str, Fraction]) -> VideoMeta:
    pictures = picture_files(path)
    if not pictures:
        raise DreamvidError(f"input folder {path} holds no pictures ({', '.join(PICTURE_EXTS)}): give a video "
                            f"file or a folder of frames")
    kinds = sorted({os.path.splitext(p)[1].lower().replace(".jpeg", ".jpg").replace(".tiff", ".tif")
                    for p in pictures})
    if len(kinds) > 1:
        warnings.warn(f"input folder {path} holds {' and '.join(kinds)} pictures: all {len(pictures)} are frames, "
                      f"in name order", stacklevel=3)
    width, height = _picture_size(pictures[0])
    for picture in pictures[1:]:
        w, h = _picture_size(picture)
        if (w, h) != (width, height):
            raise DreamvidError(f"{picture} is {w}x{h}, but {os.path.basename(pictures[0])} is {width}x{height}: "
                                f"the frames of a folder must have one size")
    rate = Fraction(fps_arg(fps))
    return VideoMeta(path=path, width=width, height=height, fps=fps_arg(rate), frames=len(pictures),
                     duration=float(len(pictures) / rate), codec="pictures", pictures=tuple(pictures))


def probe(path: str, fps: Union[float, str, Fraction] = 12) -> VideoMeta:
    """Frame count, exact frame rate, duration, size and audio of a clip, read without decoding.

    A folder is a clip of its pictures (`picture_files`) at `fps` (a video file has a rate of its own;
    12 is the config's default).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DreamvidError(f"input not found: {path}")
    if os.path.isdir(path):
        return _probe_folder(path, fps)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", path, "-map", "0:V:0?", "-map", "0:a:0?",
           "-c", "copy", "-f", "framecrc", "-"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, **OWN_SESSION)
        header: Dict[str, str] = {}
        vpts = array("q")
        vdur = array("q")
        adur = 0
        try:
            for raw in proc.stdout:  # type: ignore[union-attr]
                line = raw.decode(errors="replace")
                if line.startswith("#"):
                    key, _, value = line[1:].partition(":")
                    header[key.strip()] = value.strip()
                    continue
                cols = line.split(",")
                if len(cols) < 5 or _discarded(cols[6:]):
                    continue
                if cols[0].strip() == "0":
                    vpts.append(int(cols[2]))
                    vdur.append(int(cols[3]))
                else:
                    adur += int(cols[3])
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            rc = proc.wait()
        err.seek(0)
        log = err.read().decode(errors="replace")
    info = log.split("Stream mapping:")[0]
    if "Input #0" not in info:
        raise DreamvidError(f"cannot read {path} as a video: {_ffmpeg_complaint(log)}")
    video_line = next((ln for ln in info.splitlines() if re.search(r"Stream #0:\d+.*: Video: ", ln)
                       and "attached pic" not in ln), None)
    if video_line is None or header.get("media_type 0") != "video":
        raise DreamvidError(f"{path} has no video stream (is it an audio file?)")
    if rc != 0 and not vpts:
        raise DreamvidError(f"cannot read {path}: {_ffmpeg_complaint(log)}")
    if not vpts:
        raise DreamvidError(f"{path} has a video stream with no frames")
    if re.search(r"Input #0, (image2|\w+_pipe)", info) and len(vpts) == 1:
        raise DreamvidError(f"{path} is a still image, not a video: use mode=zoom input={path}")

    width, height = (int(v) for v in header["dimensions 0"].split("x"))
    sar = _ratio(header.get("sar 0", "1/1"))
    if sar != 1:  # non-square pixels (anamorphic): frames are read at the displayed width, square pixels
        width = max(2, 2 * round(width * sar / 2))
    block = info[info.find(video_line) + len(video_line):].split("Stream #")[0]  # the stream's side data
    rot = re.search(r"rotation of (-?[\d.]+) degrees", block, re.IGNORECASE)
    rotation = int(round(float(rot.group(1)))) % 360 if rot else 0
    if rotation in (90, 270):  # ffmpeg turns the picture upright while decoding
        width, height = height, width
    tb = Fraction(header.get("tb 0", "1/1000"))
    reported = re.search(r", ([\d.]+k?) (?:fps|tbr)", video_line)
    codec = video_line.split("Video: ", 1)[1].split()[0].rstrip(",")

    n = len(vpts)
    pts = sorted(vpts)
    deltas = [b - a for a, b in zip(pts, pts[1:]) if b > a] or [vdur[0] or 1]
    step = Counter(deltas).most_common(1)[0][0]
    # within one tick of the usual step: timestamps rounded to the container's clock (webm, mkv: 1 ms)
    regular = [d for d in deltas if abs(d - step) <= 1]
    last = vdur[n - 1] if vdur[n - 1] > 0 else step
    vfr = False
    # A constant rate, allowing a few irregular steps (a dropped frame, or B-frames lost where a
    # truncated file ends); a clip whose steps vary more often is variable-rate.
    if len(regular) >= 0.9 * len(deltas) and all(d == step for d in regular):
        rate = 1 / (step * tb)
    elif len(regular) >= 0.9 * len(deltas):
        span = sum(regular)
        rate = _snap_rate(Fraction(len(regular)) / (span * tb), reported.group(1) if reported else None,
                          tolerance=2.0 / span + 1e-6)
    else:
        vfr = True
        total = (pts[-1] - pts[0] + last) * tb
        rate = (Fraction(n) / total).limit_denominator(1001)
        n = max(1, round(total * rate))  # the frames that `-fps_mode cfr` at this rate delivers
    has_audio = header.get("media_type 1") == "audio"
    audio_codec = header.get("codec_id 1") if has_audio else None
    audio_duration = float(adur * Fraction(header["tb 1"])) if has_audio and "tb 1" in header else None
    # A video stream that starts after the file does (after its audio): the audio under the first frame
    # is this far in. framecrc's timestamps, like -ss, count from the file's start.
    start = float(pts[0] * tb)
    truncated = next((_ffmpeg_complaint(ln) for ln in log.split("Stream mapping:")[-1].splitlines()
                      if "partial file" in ln.lower() or "end of file" in ln.lower()), None)
    indexed = None
    if truncated:
        # the container's duration comes from its index, written before the file was cut short
        d = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", info)
        indexed = round((int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3))) * rate) if d else 0
        indexed = indexed if indexed > n else None
    return VideoMeta(path=path, width=width, height=height, fps=fps_arg(rate), frames=n,
                     duration=float(n / rate), codec=codec, vfr=vfr, has_audio=has_audio,
                     audio_codec=audio_codec, audio_duration=audio_duration, rotation=rotation,
                     sar=f"{sar.numerator}/{sar.denominator}", start=start if start > START_TOLERANCE else 0.0,
                     truncated=truncated, indexed_frames=indexed)


def read_frames(path: str, size: Optional[Tuple[int, int]] = None, max_frames: Optional[int] = None,
                meta: Optional[VideoMeta] = None, start: int = 0) -> Tuple[VideoMeta, Iterator[np.ndarray]]:
    """(meta, frames): the clip's metadata, then a generator of (H, W, 3) uint8 RGB frames.

    size=(width, height) resizes while decoding. A variable-frame-rate clip is resampled to its
    average rate (`-fps_mode cfr`), which keeps its duration. Decoding that stops before the clip's
    index says raises `TruncatedVideo` after the last good frame; ffmpeg is always reaped.
    Frames start..max_frames-1 are delivered: a video's earlier frames are decoded and dropped (the
    same frames as reading from the start), a folder's earlier pictures are not read.
    """
    meta = meta or probe(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    w, h = size or meta.size
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {w}x{h}")
    if meta.pictures:
        return meta, _pictures(meta, int(w), int(h), max_frames, start)
    frames = _frames(meta, int(w), int(h), max_frames)
    return meta, _dropping(frames, start) if start else frames


def _dropping(frames: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """`frames` without its first n; closing this closes `frames`."""
    try:
        for i, frame in enumerate(frames):
            if i >= n:
                yield frame
    finally:
        frames.close()  # type: ignore[attr-defined]


def _pictures(meta: VideoMeta, w: int, h: int, max_frames: Optional[int], start: int = 0) -> Iterator[np.ndarray]:
    """A folder's pictures as frames, read by PICTURE_READERS threads (decoders release the GIL) at most
    twice as many pictures ahead, in order."""
    import cv2

    def load(path: str) -> np.ndarray:
        frame = read_image(path, "frame")
        if frame.shape[:2] != (meta.height, meta.width):  # changed since `probe` looked
            raise DreamvidError(f"{path} is {frame.shape[1]}x{frame.shape[0]}, but the frames of {meta.path} are "
                                f"{meta.width}x{meta.height}: the frames of a folder must have one size")
        if (w, h) != meta.size:
            shrinking = w * h < meta.width * meta.height
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        return frame

    paths = iter(meta.pictures[start:max_frames])
    pool = ThreadPoolExecutor(PICTURE_READERS, thread_name_prefix="dreamvid-pictures")
    try:
        pending = deque(pool.submit(load, p) for p in islice(paths, 2 * PICTURE_READERS))
        while pending:
            frame = pending.popleft().result()
            following = next(paths, None)
            if following is not None:
                pending.append(pool.submit(load, following))
            yield frame
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _frames(meta: VideoMeta, w: int, h: int, max_frames: Optional[int]) -> Iterator[np.ndarray]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", meta.path, "-map", "0:V:0"]
    if (w, h) != meta.size or meta.sar != "1/1":
        shrinking = w * h < meta.width * meta.height
        cmd += ["-vf", f"scale={w}:{h}:flags={'area' if shrinking else 'bicubic'}"]
    wanted = meta.frames if max_frames is None else min(meta.frames, max_frames)
    if meta.vfr:
        # duplicate or drop frames onto the average rate's grid; the count is capped at the one
        # probe announced (ffmpeg may pad the end with one more duplicate)
        cmd += ["-fps_mode", "cfr", "-r", meta.fps, "-frames:v", str(wanted)]
    else:
        cmd += ["-fps_mode", "passthrough"] + (["-frames:v", str(wanted)] if max_frames is not None else [])
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    nbytes = w * h * 3
    count = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                bufsize=nbytes, **OWN_SESSION)
        try:
            limit = wanted if meta.vfr or max_frames is not None else None
            while limit is None or count < limit:
                buf = bytearray(nbytes)  # a fresh, writable buffer per frame: consumers may keep frames
                if proc.stdout.readinto(buf) < nbytes:  # type: ignore[union-attr]
                    break
                count += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            rc, log = 0, ""
            if limit is None or count < limit:  # ffmpeg ended the stream itself: hear why
                rc = proc.wait()
                err.seek(0)
                log = err.read().decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.wait()
    errors = [ln for ln in log.splitlines() if ln.strip()]  # at -loglevel error, every line is one
    if count == 0:
        raise DreamvidError(f"no frame could be decoded from {meta.path}: {_ffmpeg_complaint(log)}")
    if meta.indexed_frames:  # a cut-off file: its index knows the frames that are missing
        wanted = meta.indexed_frames if max_frames is None else min(meta.indexed_frames, max_frames)
    if count < wanted and (rc != 0 or errors or meta.truncated):
        why = meta.truncated or _ffmpeg_complaint("\n".join(errors) or log)
        raise TruncatedVideo(f"{meta.path} is truncated or damaged: decoding stopped after frame {count} "
                             f"of {wanted} ({why})", frames=count, expected=wanted)
    if errors:
        warnings.warn(f"ffmpeg reported errors decoding {meta.path} (damaged frames may show): "
                      f"{_ffmpeg_complaint(chr(10).join(errors))}", stacklevel=2)


def webm_copy(video: str) -> str:
    """A VP9 WebM beside an mp4 (made once, remade when the mp4 is newer), for browsers without H.264."""
    out = os.path.splitext(video)[0] + ".webm"
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(video):
        return out
    tmp = files.temp_file(os.path.dirname(os.path.abspath(out)), os.path.basename(out))
    # Constant quality (-b:v 0 -crf) and row multithreading: a small, quick preview copy.
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", video,
           "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32",
           "-deadline", "good", "-cpu-used", "5", "-row-mt", "1", "-pix_fmt", "yuv420p",
           "-c:a", "libopus", "-f", "webm", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True, **OWN_SESSION)
    if proc.returncode != 0:
        files.remove(tmp)
        raise DreamvidError(f"ffmpeg could not make {out}: {_ffmpeg_complaint(proc.stderr)}")
    return files.place(tmp, out, files.identity(out))  # an older copy is replaced
