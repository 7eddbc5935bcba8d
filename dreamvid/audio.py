"""A song's loudness and onsets, frame by frame, for schedules that follow the music.

`analyse` decodes a sound (any file PyAV reads: wav, mp3, aac, flac, opus, a video's audio track) to mono
PCM and measures it in hops of HOP seconds:

- loudness: the RMS of each hop, smoothed by a moving average of SMOOTH seconds (an envelope that rises
  and falls with the music rather than with each cycle of a bass note), divided by its 99th percentile
  and clipped to 0..1;
- onset strength: spectral flux, the sum over frequency bins of each hop's rise in log magnitude over the
  hop before (Bello et al. 2005, "A tutorial on onset detection in music signals"): beats and hits rise
  in many bins at once, a held note in none. Divided by its 99.5th percentile and clipped to 0..1.

`Signals.at_frames(fps)` gives both per frame of a render: a frame's loudness is the mean over its span
of time, its onset the largest value in its span, so that a hit between two frame times still counts
once. `schedule` evaluates `loudness(x)` and `onset(x)` (x a frame index, fractional between frames) from
the signals of the render in progress (`schedule.use_signals`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import DreamvidError

RATE = 22050  # Hz the sound is analysed at
HOP = 0.005  # seconds between measurements
WINDOW = 1024  # samples of each spectrum (46 ms at RATE)
SMOOTH = 0.1  # seconds of the loudness envelope's moving average
MAX_SECONDS = 6 * 3600.0  # a longer sound is refused: six hours of music is not a song


@dataclass
class Signals:
    """Loudness and onset strength of a sound, one value per HOP seconds, each 0..1."""

    loudness: np.ndarray
    onset: np.ndarray
    duration: float  # seconds of sound
    source: str = ""

    def at_frames(self, fps: float, frames: Optional[int] = None) -> "FrameSignals":
        n = frames if frames is not None else max(1, math.ceil(self.duration * fps - 1e-9))
        loud, hit = np.zeros(n, np.float32), np.zeros(n, np.float32)
        per = 1.0 / (fps * HOP)  # hops per frame
        for i in range(n):
            a, b = int(round(i * per)), int(round((i + 1) * per))
            b = max(b, a + 1)
            if a < len(self.loudness):
                loud[i] = float(self.loudness[a:b].mean())
                hit[i] = float(self.onset[a:b].max())
        return FrameSignals(loud, hit)


@dataclass
class FrameSignals:
    """Loudness and onset per frame of a render (0..1); outside the sound, 0."""

    loudness: np.ndarray
    onset: np.ndarray

    def value(self, name: str, x: float) -> float:
        """The curve `name` at frame x (linear between frames); 0 before the first frame and after the last."""
        curve = self.loudness if name == "loudness" else self.onset
        n = len(curve)
        if n == 0 or not 0 <= x < n:
            return 0.0
        i = int(x)
        j, w = min(i + 1, n - 1), x - i
        return float(curve[i] * (1 - w) + curve[j] * w)


def decode(path: str, rate: int = RATE) -> np.ndarray:
    """A sound's first audio stream as mono float32 samples at `rate` Hz."""
    import av

    try:
        container = av.open(path)
    except (av.error.FileNotFoundError, FileNotFoundError):
        raise DreamvidError(f"audio={path}: no such file") from None
    except av.error.FFmpegError as e:
        raise DreamvidError(f"audio={path}: not a sound ffmpeg can read ({e.strerror or e})") from None
    with container:
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            raise DreamvidError(f"audio={path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts, total = [], 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    part = out.to_ndarray().reshape(-1)
                    parts.append(part)
                    total += len(part)
                    if total > MAX_SECONDS * rate:
                        raise DreamvidError(f"audio={path} is longer than {MAX_SECONDS / 3600:.0f} hours")
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:  # damaged: what decoded is kept
            if not parts:
                raise DreamvidError(f"audio={path}: its sound could not be decoded ({e.strerror or e})") from None
    samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if not len(samples):
        raise DreamvidError(f"audio={path} has no sound in it")
    return samples


def _normalised(curve: np.ndarray, percentile: float) -> np.ndarray:
    top = float(np.percentile(curve, percentile)) if len(curve) else 0.0
    if top <= 1e-9:
        return np.zeros_like(curve)
    return np.clip(curve / top, 0.0, 1.0).astype(np.float32)


def analyse_samples(samples: np.ndarray, rate: int = RATE, source: str = "") -> Signals:
    """Loudness and onset strength of mono samples (see the module's docstring)."""
    hop = max(1, int(round(HOP * rate)))
    n = max(1, int(math.ceil(len(samples) / hop)))
    # Each spectrum's window ends at its hop: in log magnitude a rise shows as soon as it enters a window,
    # so a centred window would put an onset's flux up to half a window (23 ms) before it, often into the
    # frame before; ending at the hop, the flux peaks at the onset or a few ms after.
    padded = np.concatenate([np.zeros(WINDOW, np.float32), samples, np.zeros(WINDOW + hop, np.float32)])
    starts = np.arange(n) * hop
    frames = padded[starts[:, None] + np.arange(WINDOW)[None, :]]  # (n, WINDOW): hop i's WINDOW samples before it
    centred = padded[starts[:, None] + WINDOW - WINDOW // 4 + np.arange(WINDOW // 2)[None, :]]
    rms = np.sqrt(np.mean(centred ** 2, axis=1))  # 23 ms around each hop
    k = max(1, int(round(SMOOTH / HOP)))
    envelope = np.convolve(rms, np.ones(k) / k, mode="same")
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(WINDOW).astype(np.float32), axis=1))
    logmag = np.log1p(100.0 * spectrum)
    flux = np.maximum(np.diff(logmag, axis=0, prepend=logmag[:1]), 0.0).sum(axis=1)
    return Signals(_normalised(envelope, 99.0), _normalised(flux, 99.5), len(samples) / rate, source)


def analyse(path: str) -> Signals:
    """Loudness and onset strength of the sound in `path`."""
    return analyse_samples(decode(path), RATE, path)
