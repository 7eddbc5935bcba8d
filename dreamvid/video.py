"""Video and frame-sequence I/O through ffmpeg: the only module that talks to ffmpeg.

Frames are (H, W, 3) uint8 RGB arrays. Outputs are written under a temporary name and renamed only
when complete, so an interrupted run never leaves a file that looks finished.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from fractions import Fraction
from typing import Dict, List, Optional, Union

import numpy as np

from .model import DreamvidError

VIDEO_EXTS = (".mp4", ".mov", ".mkv")
FORMATS = ("mp4", "gif", "png")
PARTIAL = ".partial"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def output_kind(path: str) -> str:
    """mp4 | gif | png (a folder of numbered PNG frames), from the output path."""
    ext = os.path.splitext(path.rstrip("/"))[1].lower()
    if path.endswith(("/", os.sep)) or ext == "" or os.path.isdir(path):
        return "png"
    if ext in VIDEO_EXTS:
        return "mp4"
    if ext == ".gif":
        return "gif"
    raise DreamvidError(f"unsupported output extension {ext!r}: use .mp4, .gif, or a folder for PNG frames")


def fps_arg(fps: Union[float, str, Fraction]) -> str:
    """ffmpeg's rate argument: exact fractions (30000/1001) stay exact."""
    if isinstance(fps, str):
        return fps
    f = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    return f"{f.numerator}/{f.denominator}"


def partial_path(path: str) -> str:
    path = path.rstrip("/").rstrip(os.sep)
    head, tail = os.path.split(path)
    return os.path.join(head, tail + PARTIAL)


class Encoder:
    """Streams frames into an mp4 (H.264, yuv420p), a GIF, or a folder of PNG frames.

    Use as a context manager: a clean exit renames the finished file into place; an exception
    removes the partial file. `audio` muxes the audio of that media file into an mp4 output.
    """

    def __init__(self, path: str, width: int, height: int, fps: Union[float, str, Fraction], *,
                 audio: Optional[str] = None, audio_start: float = 0.0,
                 metadata: Optional[Dict[str, str]] = None, overwrite: bool = False, crf: int = 18,
                 keep_partial: bool = False):
        if width < 1 or height < 1:
            raise DreamvidError(f"frame size must be positive, got {width}x{height}")
        self.path, self.kind = path.rstrip("/") or path, output_kind(path)
        self.width, self.height, self.fps = int(width), int(height), fps
        self.audio, self.audio_start = audio, audio_start
        self.metadata, self.overwrite, self.crf = metadata or {}, overwrite, crf
        self.keep_partial = keep_partial
        self.tmp = partial_path(self.path)
        self.count = 0
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
        if os.path.exists(self.path) and not self.overwrite:
            raise DreamvidError(f"output exists: {self.path} (pass overwrite=true to replace it, "
                                f"or choose another output=)")
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise DreamvidError(f"cannot create output folder {folder}: {e.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise DreamvidError(f"output folder is not writable: {folder}")
        self._remove(self.tmp)
        if self.kind == "png":
            os.makedirs(self.tmp)
            return
        self._log = open(self.tmp + ".log", "w+b")
        self._proc = subprocess.Popen(self._command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log)

    def _command(self) -> List[str]:
        w, h = self.width, self.height
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", fps_arg(self.fps), "-i", "-"]
        if self.kind == "gif":
            # One palette for the whole clip, generated from its own frames, keeps colours faithful.
            return cmd + ["-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=full[p];"
                          "[b][p]paletteuse=dither=sierra2_4a", "-loop", "0", "-f", "gif", self.tmp]
        if self.audio:
            cmd += ["-ss", f"{self.audio_start:.6f}", "-i", self.audio, "-map", "0:v:0", "-map", "1:a:0?",
                    "-c:a", "aac", "-b:a", "192k", "-shortest"]
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
        return cmd + vf + ["-c:v", "libx264", "-preset", "medium", "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                           "-movflags", "+faststart"] + meta + ["-f", "mp4", self.tmp]

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.height}, {self.width}, 3) uint8, got {frame.shape} {frame.dtype}")
        if self.kind == "png":
            import cv2

            name = os.path.join(self.tmp, f"frame_{self.count:06d}.png")
            if not cv2.imwrite(name, np.ascontiguousarray(frame[..., ::-1])):
                raise DreamvidError(f"cannot write {name} (disk full or folder not writable?)")
        else:
            assert self._proc is not None and self._proc.stdin is not None, "encoder is not open"
            try:
                self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except (BrokenPipeError, OSError):
                raise DreamvidError(f"ffmpeg stopped while writing {self.path}: {self._ffmpeg_error()}") from None
        self.count += 1

    def finish(self) -> str:
        """Close the stream and move the finished output into place; returns its path."""
        if self.count == 0:
            self.abort()
            raise DreamvidError(f"no frames were produced for {self.path}")
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
            self._close_log(remove=True)
        if os.path.exists(self.path) and self.overwrite:
            self._remove(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and remove the partial output (kept when keep_partial, e.g. for an interrupted render)."""
        if self._proc is not None:
            if self.keep_partial and self.count:
                try:
                    self._proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
                self._proc.wait()
            else:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._close_log(remove=True)
        if not (self.keep_partial and self.count):
            self._remove(self.tmp)

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

    def _close_log(self, remove: bool) -> None:
        if self._log is not None:
            name = self._log.name
            self._log.close()
            self._log = None
            if remove:
                self._remove(name)

    @staticmethod
    def _remove(path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


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
