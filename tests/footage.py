"""Test footage made with ffmpeg at test time: one short clip with white flashes and clicks at known
frames, written in each container and codec users bring (B-frames and edit lists, 10-bit HEVC, VP9 and
Opus, ProRes, MJPEG, packed-B-frame XviD with MP3, MPEG-4 with AC3, a variable rate, a phone's rotation
tag), and the measurements that find the flashes and the clicks again in a dream of it.

Real footage from outside the project comes from Debian's `opencv-doc` package (OpenCV's sample
videos: Megamind.avi, an XviD AVI with packed B-frames and AC3 sound; vtest.avi, DivX 3; tree.avi,
Cinepak with most of its frames left empty): `real_clips` fetches the package from the Debian archive
with `apt-get download` at test time and unpacks only those files (nothing of it is kept in the project).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dreamvid.video import ffmpeg_exe

FLASHES = (12, 31, 50)  # frames of the clip at which a white frame flashes and a click sounds
FRAMES = 66
SIZE = (96, 64)
SAMPLE_RATE = 48000


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@dataclass(frozen=True)
class Clip:
    """How one clip of the corpus is written, and what it holds."""

    name: str
    video: Tuple[str, ...]  # codec arguments
    audio: Tuple[str, ...]
    rate: str = "24000/1001"
    frames: int = FRAMES
    late: float = 0.0  # seconds by which the video starts after the audio (a start offset)
    cut: float = 0.0  # seconds cut off the front without re-encoding (an edit list over the pre-roll)
    rotate: int = 0  # a phone's rotation tag, degrees counter-clockwise
    vfr: bool = False  # frames kept at irregular times from a 60 fps source

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.rate)


CORPUS = [
    Clip("h264_bframes_editlist.mp4", ("-c:v", "libx264", "-bf", "3", "-g", "12", "-pix_fmt", "yuv420p"),
         ("-c:a", "aac"), cut=0.3),
    Clip("h264_late_video.mp4", ("-c:v", "libx264", "-bf", "3", "-pix_fmt", "yuv420p"), ("-c:a", "aac"), late=0.5),
    Clip("hevc_10bit.mp4", ("-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1", "-x265-params",
                            "log-level=error"), ("-c:a", "aac"), rate="25"),
    Clip("vp9_opus.webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"), ("-c:a", "libopus"),
         rate="30"),
    Clip("h264_flac.mkv", ("-c:v", "libx264", "-pix_fmt", "yuv420p"), ("-c:a", "flac"), rate="30000/1001"),
    Clip("prores.mov", ("-c:v", "prores_ks", "-profile:v", "0"), ("-c:a", "pcm_s16le"), rate="25"),
    Clip("mjpeg.avi", ("-c:v", "mjpeg", "-q:v", "3"), ("-c:a", "pcm_s16le"), rate="15", frames=60),
    # libxvid packs B-frames into an AVI the way DivX 5 did (two frames in one chunk, then a placeholder)
    Clip("xvid_packed_mp3.avi", ("-c:v", "libxvid", "-bf", "2", "-vtag", "XVID"), ("-c:a", "libmp3lame")),
    Clip("mpeg4_bframes_ac3.avi", ("-c:v", "mpeg4", "-bf", "2", "-vtag", "DX50"), ("-c:a", "ac3")),
    Clip("vfr.mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-fps_mode", "vfr"), ("-c:a", "aac"), rate="60",
         frames=132, vfr=True),
    Clip("phone_rotated.mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p"), ("-c:a", "aac"), rate="30", rotate=90),
]


def flash_times(clip: Clip) -> List[float]:
    """When the flashes are, in seconds of the clip as written (before any cut)."""
    return [f / clip.fraction for f in (_vfr_flashes(clip) if clip.vfr else FLASHES)]


def _vfr_flashes(clip: Clip) -> Tuple[int, ...]:
    return tuple(2 * f for f in FLASHES)  # frames of the 60 fps source: at the same seconds as at 30


def _lit(clip: Clip) -> Tuple[int, ...]:
    """The frames that are white: one per flash, two in the variable-rate clip (whose resampling to its
    average rate leaves out some frames of its fast stretches)."""
    if clip.vfr:
        return tuple(n for f in _vfr_flashes(clip) for n in (f, f + 1))
    return FLASHES


def _kept(n: int) -> bool:
    """The frames a variable-rate clip keeps of its 60 fps source: runs at 60, 30 and 20 fps."""
    return n < 30 or (n < 80 and n % 2 == 0) or (n >= 80 and n % 3 == 0) or n in _VFR_LIT


_VFR_LIT = {n for f in FLASHES for n in (2 * f, 2 * f + 1)}


def make(clip: Clip, folder: str) -> str:
    """Write `clip` into `folder`; returns its path."""
    path = os.path.join(folder, clip.name)
    w, h = SIZE
    lit = "+".join(f"eq(n\\,{f})" for f in _lit(clip))
    video = f"testsrc2=size={w}x{h}:rate={clip.rate},trim=end_frame={clip.frames}," \
            f"drawbox=c=white:t=fill:enable='{lit}'"
    if clip.vfr:
        keep = "+".join(f"eq(n\\,{n})" for n in range(clip.frames) if _kept(n))
        video += f",select='{keep}'"
    seconds = float(clip.frames / clip.fraction)
    clicks = "+".join(f"between(t\\,{float(t) + clip.late:.6f}\\,{float(t) + clip.late + 0.01:.6f})"
                      for t in flash_times(clip))
    audio = f"aevalsrc=exprs='0.9*sin(2*PI*1000*t)*({clicks})':s={SAMPLE_RATE}:d={seconds + clip.late:.6f}"
    target = path if not (clip.cut or clip.late or clip.rotate) else path + ".src" + os.path.splitext(path)[1]
    ffmpeg("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-map", "0:v", "-map", "1:a",
           *clip.video, *clip.audio, target)
    if clip.late:  # the video stream starts later than the audio, in the same file
        ffmpeg("-itsoffset", f"{clip.late}", "-i", target, "-i", target, "-map", "0:v", "-map", "1:a",
               "-c", "copy", path)
    elif clip.cut:  # a cut without re-encoding: an edit list over the pre-roll from the keyframe before
        ffmpeg("-ss", f"{clip.cut}", "-i", target, "-c", "copy", path)
    elif clip.rotate:
        ffmpeg("-display_rotation", str(clip.rotate), "-i", target, "-c", "copy", path)
    if target != path:
        os.remove(target)
    return path


def expected(clip: Clip) -> Dict[str, object]:
    """What a faithful reader finds in `clip`: its rate, frame count and duration, and the frame each flash
    falls on (the clip's own timeline: from its first frame, after a cut)."""
    if clip.vfr:
        kept = sum(_kept(n) for n in range(clip.frames))
        seconds = Fraction(clip.frames, 60)
        return {"frames": kept, "seconds": seconds, "flashes": [float(t) for t in flash_times(clip)]}
    cut_frames = round(clip.cut * clip.fraction)
    frames = clip.frames - cut_frames
    return {"rate": clip.fraction, "frames": frames, "seconds": frames / clip.fraction,
            "flashes": [float((f - cut_frames) / clip.fraction) for f in FLASHES if f >= cut_frames]}


# -- measuring an output -------------------------------------------------------------------------

def video_flashes(path: str) -> Tuple[List[int], Fraction, int]:
    """(the frames that flash, the rate, the frame count) of a video, read by imageio-ffmpeg (another
    reader than dreamvid's own)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path)
    meta = next(gen)
    w, h = meta["size"]
    means = [float(np.frombuffer(f, np.uint8).reshape(h, w, 3).mean()) for f in gen]
    rate = Fraction(meta["fps"]).limit_denominator(1001)
    lit = [i for i, m in enumerate(means) if m > 200]
    return [i for i in lit if i - 1 not in lit], rate, len(means)  # a flash of two frames is one flash


def audio_of(path: str, start: float = 0.0, seconds: Optional[float] = None) -> np.ndarray:
    """A file's sound as mono float samples at SAMPLE_RATE, decoded by the ffmpeg program."""
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    samples = np.frombuffer(pcm, np.float32)  # cut here: seeking in an AVI loses its sound
    first = int(round(start * SAMPLE_RATE))
    return samples[first: None if seconds is None else first + int(round(seconds * SAMPLE_RATE))]


def clicks(samples: np.ndarray, threshold: float = 0.3) -> List[float]:
    """The times (s) where a click starts: the sound rises above `threshold` after 50 ms of quiet."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    quiet = int(0.05 * SAMPLE_RATE)
    starts = [int(i) for k, i in enumerate(loud) if k == 0 or i - loud[k - 1] > quiet]
    return [i / SAMPLE_RATE for i in starts]


def lag(a: np.ndarray, b: np.ndarray, most: float = 0.5) -> float:
    """Seconds by which sound `b` is late against `a` (cross-correlation of their envelopes)."""
    step = 48  # 1 ms
    env = [np.abs(x[: len(x) // step * step]).reshape(-1, step).mean(1) for x in (a, b)]
    n = min(len(env[0]), len(env[1]))
    x, y = (e[:n] - e[:n].mean() for e in env)
    shifts = range(-int(most * 1000), int(most * 1000) + 1)
    score = [float(np.dot(x[max(0, -s): n - max(0, s)], y[max(0, s): n - max(0, -s)])) for s in shifts]
    return shifts[int(np.argmax(score))] / 1000.0


# -- real footage ----------------------------------------------------------------------------------

REAL_PACKAGE = "opencv-doc"
REAL_FOLDER = "usr/share/doc/opencv-doc/examples/data"
REAL_FILES = ("Megamind.avi", "vtest.avi", "tree.avi")


def real_clips(folder: str) -> Tuple[Optional[Dict[str, str]], str]:
    """({name: path} of OpenCV's sample videos, unpacked into `folder`), or (None, why not)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return None, "needs Debian's apt-get and dpkg-deb to fetch the opencv-doc package"
    os.makedirs(folder, exist_ok=True)
    got = subprocess.run(["apt-get", "download", REAL_PACKAGE], cwd=folder, capture_output=True, text=True)
    if got.returncode != 0 and os.geteuid() == 0:  # a new machine: its package lists are not there yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        got = subprocess.run(["apt-get", "download", REAL_PACKAGE], cwd=folder, capture_output=True, text=True)
    debs = [n for n in os.listdir(folder) if n.startswith(REAL_PACKAGE) and n.endswith(".deb")]
    if got.returncode != 0 or not debs:
        return None, f"apt-get download {REAL_PACKAGE} failed: {got.stderr.strip().splitlines()[-1:]}"
    members = [f"./{REAL_FOLDER}/{n}" for n in REAL_FILES]
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", os.path.join(folder, debs[0])], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", folder, *members], stdin=tar.stdout, check=True)
    tar.wait()
    os.remove(os.path.join(folder, debs[0]))
    return {n: os.path.join(folder, REAL_FOLDER, n) for n in REAL_FILES}, ""


def frame_order(output: Sequence[np.ndarray], source: Sequence[np.ndarray]) -> List[int]:
    """For each output frame, the index of the source frame it looks most like (mean absolute difference)."""
    src = np.stack([s.astype(np.float32) for s in source])
    return [int(np.abs(src - o.astype(np.float32)).mean(axis=(1, 2, 3)).argmin()) for o in output]
