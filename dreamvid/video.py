"""Video and frame-sequence I/O through ffmpeg: the only module that talks to ffmpeg.

Writing: `Encoder`. Reading: `probe` (frame count, exact rate, duration, size, audio) and
`read_frames` (metadata, then a generator of frames), of a video file or of a folder of pictures (one
frame each, in natural order, at a rate given). Frames are (H, W, 3) uint8 RGB arrays.
Outputs are written under a temporary name and renamed only when complete, so an interrupted run
never leaves a file that looks finished.
"""
from __future__ import annotations

import errno
import functools
import heapq
import itertools
import json
import math
import os
import re
import subprocess
import tempfile
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

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
        to aac, cut to the sample. The cut is made on the decoded sound (atrim), never by seeking in the
        source: seeking an AVI drops the sound after it (AC3 in an AVI lost all but its first second).
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
               "-i", self.audio, "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "0", "-c:v", "copy",
               "-t", f"{float(seconds):.6f}"]
        if copy:
            cmd += ["-c:a", "copy"]
        else:
            trim = f"atrim=start={self.audio_start:.6f},asetpts=PTS-STARTPTS" if self.audio_start else "anull"
            cmd += ["-af", trim, "-c:a", "aac", "-b:a", "192k"]
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
    """The codec of a media file's first audio stream ("aac", "mp3", "opus"...), or None when it has none."""
    with _open(path) as container:
        audio = next(iter(container.streams.audio), None)
        return audio.codec_context.codec.canonical_name if audio is not None else None


def probe_metadata(path: str) -> Dict[str, str]:
    """The container's metadata tags (e.g. the embedded config in `comment`)."""
    with _open(path) as container:
        return dict(container.metadata)


def config_metadata(config: dict) -> Dict[str, str]:
    return {"comment": "dreamvid config: " + json.dumps(config, sort_keys=True, separators=(",", ":"))}


# -- reading ------------------------------------------------------------------------------------
# Clips are read with PyAV (FFmpeg's own libraries). `probe` demuxes the video's packets without
# decoding them: their timestamps give the exact rate, the frame count and the duration, and show a
# variable rate; one frame is decoded for its orientation and its presentation time. `read_frames`
# decodes a frame at a time, so memory stays flat however long the clip is, and places every decoded
# frame on the clip's frame grid by its presentation time (`_on_the_grid`): a constant-rate clip
# comes out frame for frame, a dropped frame is repeated, a variable-rate clip is resampled to a
# constant rate, and the output lasts as long as the source whatever its container says.

# Frame rates that timestamps rounded to the container's clock (webm/mkv: 1 ms) are snapped to.
_NTSC = tuple(Fraction(k * 1000, 1001) for k in (24, 30, 48, 60, 120, 240))
_STANDARD = _NTSC + tuple(Fraction(k) for k in (8, 10, 12, 15, 24, 25, 30, 48, 50, 60, 90, 100, 120, 240))
# Container formats whose "video" is a picture (a still given where a clip is needed)
_PICTURE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "apng")


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
    rotation: int = 0  # degrees counter-clockwise the stored picture is turned to be upright
    sar: str = "1/1"  # the stored pixels' aspect ratio; width is the displayed one
    start: float = 0.0  # seconds from the file's start to the first frame: where its audio is taken from
    truncated: Optional[str] = None  # why the file ends before its index says, when it does
    indexed_frames: Optional[int] = None  # for a truncated file: how many frames its index promises
    pictures: Tuple[str, ...] = ()  # a folder of frames: its pictures, in order (no audio; the rate was given)
    stream: int = 0  # the video stream's index in the file
    clock: str = "pts"  # the packets' timestamps that give the frames' times: pts, dts (an AVI's), or none
    origin: int = 0  # the first frame's time in the stream's ticks: frame 0 of the grid
    tick: str = "1/1000"  # the stream's time base, seconds per tick
    upright: str = ""  # how a decoded picture is turned upright (_UPRIGHT): "" as stored, "cclock", ...

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


def _snap_rate(measured: Fraction, reported: Optional[Fraction], tolerance: float) -> Fraction:
    """The exact rate behind one measured from rounded timestamps: the container's own, or a standard rate."""
    candidates: List[Fraction] = [reported] if reported else []
    candidates += sorted(_STANDARD, key=lambda c: abs(c - measured))
    for c in candidates:
        if abs(float(c - measured)) <= tolerance * float(measured):
            return c
    return measured.limit_denominator(1001)


def _av_complaint(error: Exception) -> str:
    """PyAV's error without the path it repeats: "Invalid data found when processing input"."""
    text = getattr(error, "strerror", None) or str(error)
    return text.split(": '", 1)[0].strip() or type(error).__name__


def _open(path: str):
    """The container, opened with PyAV; a file that is no media is a one-line DreamvidError."""
    import av

    try:
        return av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DreamvidError(f"cannot read {path} as a video: {_av_complaint(e)}") from None


def _video_stream(container: Any, path: str) -> Any:
    """The first video stream that is not a cover picture."""
    from av.stream import Disposition

    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:
            return stream
    raise DreamvidError(f"{path} has no video stream (is it an audio file?)")


# How the ffmpeg program turns a frame upright from its display matrix (ffmpeg_filter.c): its transpose
# filter's directions, and flips, as array operations on (H, W, 3) pictures.
_UPRIGHT: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "": lambda a: a,
    "clock": lambda a: np.rot90(a, k=-1),  # a quarter turn clockwise
    "cclock": lambda a: np.rot90(a, k=1),  # counter-clockwise
    "cclock_flip": lambda a: a.transpose(1, 0, 2),  # counter-clockwise and mirrored: the transpose
    "clock_flip": lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # clockwise and mirrored
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
    "hvflip": lambda a: a[::-1, ::-1],  # a half turn
}


def _orientation(frame: Any) -> Tuple[int, str]:
    """(degrees counter-clockwise the picture is turned to be upright, the `_UPRIGHT` operation) from a
    frame's display matrix (a phone's rotation tag), decided as the ffmpeg program decides it."""
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if matrix is None:
        return 0, ""
    m = np.frombuffer(bytes(matrix), np.int32)[:9].astype(np.float64) / 65536.0
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if s0 == 0 or s1 == 0:
        return 0, ""
    theta = float(round(math.degrees(math.atan2(m[1] / s1, m[0] / s0))))  # clockwise, as ffmpeg's get_rotation
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return 270, "cclock_flip" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1:
        flips = ("h" if m[0] < 0 else "") + ("v" if m[4] < 0 else "")
        return 180, flips + "flip" if flips else ""
    if abs(theta - 270) < 1:
        return 90, "clock_flip" if m[3] < 0 else "cclock"
    if abs(theta) > 1:  # a slanted picture (not a quarter turn): left as it is stored
        return 0, ""
    return 0, "vflip" if m[4] < 0 else ""


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
    """Frame count, exact frame rate, duration, size and audio of a clip, from its packets' timestamps.

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
    with _open(path) as container:
        v = _video_stream(container, path)
        audio = next(iter(container.streams.audio), None)
        packets = _packets(container, v, audio)
        if container.format.name in _PICTURE_FORMATS and len(packets.pts) <= 1:
            raise DreamvidError(f"{path} is a still image, not a video: use mode=zoom input={path}")
        if not packets.pts:
            raise DreamvidError(f"{path} has a video stream with no frames")
        ctx = v.codec_context
        tb = v.time_base or Fraction(1, 1000)
        facts = dict(index=v.index, width=ctx.width, height=ctx.height, codec=ctx.codec.canonical_name,
                     sar=v.sample_aspect_ratio or ctx.sample_aspect_ratio or Fraction(1), reported=v.average_rate,
                     indexed=v.frames if container.format.name.startswith("mov,") else 0,  # exact in an mp4
                     declared=container.duration / 1e6 if container.duration else None,
                     stream_start=v.start_time,
                     container_start=(container.start_time or 0) / 1e6,
                     audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
                     audio_tb=audio.time_base if audio is not None else None)
    clock, ticks, tb = _clock(packets, tb, facts["reported"])
    rate, frames, vfr = _timing(ticks, packets.durations, tb, facts["reported"])
    origin = min(ticks)
    # Where the video starts in the file, against its sound: the stream's own start (an AVI's is 0, though
    # its first frame's reconstructed pts carries the B-frames' delay), else its first frame's time
    first = facts["stream_start"] if facts["stream_start"] is not None and clock == "pts" else origin
    start = float(min(first, origin) * tb) - facts["container_start"]
    audio_duration = float(packets.audio_ticks * facts["audio_tb"]) if facts["audio_tb"] else None
    truncated, indexed = _cut_short(packets, facts, start, frames / rate, audio_duration, rate)
    rotation, upright = _orientation(_first_frame(path, facts["index"]))
    width, height, sar = facts["width"], facts["height"], facts["sar"]
    if sar != 1:  # non-square pixels (anamorphic): frames are read at the displayed width, square pixels
        width = max(2, 2 * round(width * sar / 2))
    if upright in ("clock", "cclock", "cclock_flip", "clock_flip"):  # turned upright while reading
        width, height = height, width
    return VideoMeta(path=path, width=width, height=height, fps=fps_arg(rate), frames=frames,
                     duration=float(frames / rate), codec=facts["codec"], vfr=vfr,
                     has_audio=facts["audio_codec"] is not None, audio_codec=facts["audio_codec"],
                     audio_duration=audio_duration, rotation=rotation, sar=f"{sar.numerator}/{sar.denominator}",
                     start=start if start > START_TOLERANCE else 0.0, truncated=truncated, indexed_frames=indexed,
                     stream=facts["index"], clock=clock, origin=origin, tick=f"{tb.numerator}/{tb.denominator}",
                     upright=upright)


@dataclass
class _Packets:
    """What `probe` reads of a clip's packets: each video frame's pts, dts and duration (in the order they
    are stored), every video packet counted (with those the decoder drops), the audio's length in ticks."""

    pts: List[Optional[int]]
    dts: List[Optional[int]]
    durations: List[int]
    stored: int = 0
    audio_ticks: int = 0
    damaged: Optional[str] = None  # what stopped the demuxer before the end


def _packets(container: Any, video: Any, audio: Any) -> _Packets:
    import av

    found = _Packets([], [], [])
    try:
        for packet in container.demux(*[s for s in (video, audio) if s is not None]):
            if packet.stream.index != video.index:
                found.audio_ticks += packet.duration or 0
            elif packet.size == 0 and packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            else:
                found.stored += 1
                if packet.size and not packet.is_discard:  # not an edit list's pre-roll, nor an AVI's empty chunk
                    found.pts.append(packet.pts)
                    found.dts.append(packet.dts)
                    found.durations.append(packet.duration or 0)
    except av.FFmpegError as e:  # a damaged or cut-off file: what was read before it counts
        found.damaged = _av_complaint(e)
    return found


def _clock(packets: _Packets, tb: Fraction, reported: Optional[Fraction]) -> Tuple[str, List[int], Fraction]:
    """Which of the packets' timestamps give the frames' presentation times, those times, and their unit:
    pts; or dts, where some frames have no pts (an AVI with B-frames); or the packets' durations added up
    (an MPEG program stream without timestamps); or, with none of these, one tick per frame at the
    container's rate."""
    if all(t is not None for t in packets.pts):
        return "pts", list(packets.pts), tb  # type: ignore[arg-type]
    if all(t is not None for t in packets.dts):
        return "dts", list(packets.dts), tb  # type: ignore[arg-type]
    if all(d > 0 for d in packets.durations):
        return "duration", list(itertools.accumulate([0] + packets.durations[:-1])), tb
    return "count", list(range(len(packets.pts))), 1 / (reported or Fraction(25))


def _cut_short(packets: _Packets, facts: Dict[str, Any], start: float, seen: Fraction,
               audio_duration: Optional[float], rate: Fraction) -> Tuple[Optional[str], Optional[int]]:
    """(why the file ends before its header or index says, the frames it promises) for a cut-off file,
    (None, None) for a whole one. An mp4's index counts its frames exactly; elsewhere the file's own
    duration is compared with where its streams end (a few frames short is an encoder's habit, not a
    cut: more than half a second, and 5% of the clip, is)."""
    if facts["indexed"] and facts["indexed"] > packets.stored:
        return packets.damaged or "the file ends before its index does", facts["indexed"]
    declared = facts["declared"]
    if declared:
        ends = [start + float(seen)] + ([audio_duration] if audio_duration is not None else [])
        missing = declared - facts["container_start"] - max(ends)
        if missing > max(0.5, 0.05 * declared):
            return packets.damaged or "the file ends before its header says", round((declared - start) * rate)
    return None, None


def _first_frame(path: str, index: int) -> Any:
    """The clip's first decodable frame (its orientation)."""
    import av

    with _open(path) as container:
        try:
            for frame in container.decode(container.streams[index]):
                return frame
        except av.FFmpegError as e:
            raise DreamvidError(f"no frame could be decoded from {path}: {_av_complaint(e)}") from None
    raise DreamvidError(f"no frame could be decoded from {path}")


def _timing(ticks: Sequence[Optional[int]], durations: Sequence[int], tb: Fraction,
            reported: Optional[Fraction]) -> Tuple[Fraction, int, bool]:
    """(rate, frame count, variable rate?) from the frames' presentation times in `tb` ticks.

    The usual step between frames gives the rate; the span from the first frame to the end of the last
    gives the duration, and the count is the frames of that rate in it: a dropped frame still counts
    (it is repeated), and a variable rate is its average over the span.
    """
    n = len(ticks)
    known = sorted(t for t in ticks if t is not None)
    if len(known) < 2:  # one frame, or no timestamps at all: the container's rate
        rate = reported or Fraction(25)
        return rate, n, False
    steps = [b - a for a, b in zip(known, known[1:]) if b > a]
    if not steps:
        return reported or Fraction(25), n, False
    # Timestamps rounded to a coarser clock than the stream's (milliseconds in a microsecond time base):
    # counted in that clock's ticks
    unit = functools.reduce(math.gcd, steps)
    steps = [d // unit for d in steps]
    tb = tb * unit
    step = Counter(steps).most_common(1)[0][0]
    last = durations[ticks.index(known[-1])] // unit if known[-1] in ticks else 0
    span = (known[-1] - known[0]) // unit + (last if 0 < last <= 4 * step else step)
    # within one tick of the usual step: timestamps rounded to the container's clock (webm, mkv: 1 ms);
    # where a frame lasts only a few ticks (an AVI's one), a step of one more is a dropped frame
    regular = [d for d in steps if abs(d - step) <= (1 if step >= 8 else 0)]
    if len(regular) >= 0.9 * len(steps) and all(d == step for d in regular):
        rate = 1 / (step * tb)
    elif len(regular) >= 0.9 * len(steps):
        rate = _snap_rate(Fraction(len(regular)) / (sum(regular) * tb), reported, tolerance=2.0 / sum(regular) + 1e-6)
    else:  # variable rate: resampled to its average
        rate = (Fraction(n) / (span * tb)).limit_denominator(1001)
        return rate, max(1, round(span * tb * rate)), True
    # A constant rate, allowing a few irregular steps (a dropped frame, or B-frames lost where a truncated
    # file ends): as many frames as the rate puts in the span.
    return rate, max(1, round(span * tb * rate)), False


def read_frames(path: str, size: Optional[Tuple[int, int]] = None, max_frames: Optional[int] = None,
                meta: Optional[VideoMeta] = None, start: int = 0) -> Tuple[VideoMeta, Iterator[np.ndarray]]:
    """(meta, frames): the clip's metadata, then a generator of (H, W, 3) uint8 RGB frames.

    size=(width, height) resizes while decoding. Each decoded frame goes where its presentation time
    puts it on the clip's grid of `meta.frames` frames at `meta.fps` (a variable-rate clip is resampled,
    a dropped frame repeated), so the frames last as long as the source. Decoding that stops before the
    clip's index says raises `TruncatedVideo` after the last good frame; frames the decoder reported
    errors in (concealed) are counted in one warning at the end.
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
    frames = _decoded(meta, int(w), int(h), max_frames)
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


def _decoded(meta: VideoMeta, w: int, h: int, max_frames: Optional[int]) -> Iterator[np.ndarray]:
    """Decode the clip and put its frames on the grid (`_on_the_grid`), turned upright and resized to w x h.

    A frame's time is its packet's: the decoder returns frames in presentation order, so each frame is
    given the earliest time among the packets sent and not yet matched (libavcodec's own reordering of
    timestamps, done here because the times it attaches to frames are wrong where a muxer wrote them
    wrong: a packed AVI's, a file whose pts are its dts).
    """
    import av

    wanted = meta.frames if max_frames is None else min(meta.frames, max_frames)
    turn = _UPRIGHT[meta.upright]
    stored = (h, w) if meta.upright in ("clock", "cclock", "cclock_flip", "clock_flip") else (w, h)  # resized first
    damaged, delivered = 0, 0

    def convert(frame: Any) -> np.ndarray:
        shrinking = stored[0] * stored[1] < frame.width * frame.height
        rgb = frame.to_ndarray(width=stored[0], height=stored[1], format="rgb24",
                               interpolation="AREA" if shrinking else "BICUBIC")
        return np.ascontiguousarray(turn(rgb))  # its own buffer: consumers may keep frames

    def timed(container: Any) -> Iterator[Tuple[int, Any]]:
        nonlocal damaged
        stream = container.streams[meta.stream]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding keeps up with the dream
        pending: List[int] = []  # the times of the packets sent, whose frames have not come out yet
        sent, elapsed = 0, 0  # packets sent; their durations added up (clock "duration")
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:  # after the demuxer's last, empty packet, which flushed the decoder
                return
            except av.FFmpegError:  # damage past which nothing can be read: what the decoder holds comes out
                try:
                    frames = stream.codec_context.decode(None)
                except av.FFmpegError:
                    return
                for frame in frames:
                    if pending:
                        yield heapq.heappop(pending), frame
                return
            if packet.size and not packet.is_discard:
                ticks = {"pts": packet.pts, "dts": packet.dts, "duration": elapsed}.get(meta.clock, sent)
                heapq.heappush(pending, sent if ticks is None else ticks)
                sent += 1
                elapsed += packet.duration or 0
            try:
                frames = packet.decode()
            except av.FFmpegError:  # a packet the decoder rejects: its frame is missing (the one before repeats)
                damaged += 1
                if pending:
                    heapq.heappop(pending)
                continue
            for frame in frames:
                damaged += bool(frame.is_corrupt)
                if pending:
                    yield heapq.heappop(pending), frame

    container = _open(meta.path)
    try:
        origin, per_tick = meta.origin, Fraction(meta.tick)
        grid = ((round((ticks - origin) * per_tick * meta.rate), frame) for ticks, frame in timed(container))
        for image in _on_the_grid(grid, wanted, convert, last_lasts=not meta.truncated):
            delivered += 1
            yield image
    finally:
        container.close()
    if delivered == 0:
        raise DreamvidError(f"no frame could be decoded from {meta.path}")
    expected = wanted
    if meta.indexed_frames:  # a cut-off file: its index knows the frames that are missing
        expected = meta.indexed_frames if max_frames is None else min(meta.indexed_frames, max_frames)
    if meta.truncated and delivered < expected:
        raise TruncatedVideo(f"{meta.path} is truncated or damaged: decoding stopped after frame {delivered} "
                             f"of {expected} ({meta.truncated})", frames=delivered, expected=expected)
    if damaged:
        warnings.warn(f"{damaged} frame{'s' * (damaged != 1)} of {meta.path} had decode errors and "
                      f"{'were' if damaged != 1 else 'was'} concealed (damaged blocks may show)", stacklevel=2)


def _on_the_grid(frames: Iterable[Tuple[int, Any]], count: int, convert: Callable[[Any], np.ndarray],
                 last_lasts: bool = True) -> Iterator[np.ndarray]:
    """Frames 0..count-1 of a clip from its decoded frames and the grid slot each one's time falls in:
    each frame fills its slot; an empty slot repeats the frame before it (a dropped frame, a variable
    rate's slower stretch), or the first frame before it; a second frame for the same slot is left out
    (a faster stretch), and so is one whose time goes back. With `last_lasts` the last frame fills the
    slots to `count`. Only the frames delivered are converted (`convert`)."""
    slot, held, last = 0, None, -1
    for at, frame in frames:
        if slot >= count:
            return
        if at <= last:
            continue  # its slot is filled
        last = at
        image = convert(frame)
        while slot < min(at, count):  # the slots this frame's time skipped: the frame before, again
            yield (held if held is not None else image).copy()
            slot += 1
        if slot < count:
            yield image
            slot += 1
        held = image
    while last_lasts and held is not None and slot < count:  # the last frame lasts to the end of the clip
        yield held.copy()
        slot += 1


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
