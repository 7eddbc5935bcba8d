"""README's music-video example: a beat made by ffmpeg, a zoom that follows it, and its picture.

    python scripts/music_video.py [--out docs/media] [--seconds 4] [--width 256] [--height 144]

Makes OUT/../music/beat.wav (a kick on every half second, a hi-hat between: ffmpeg's aevalsrc), dreams
a zoom to it with dreamvid (the dream's step follows the onsets, the zoom the loudness; the beat is
muxed into the mp4), and draws OUT/music_frames.png: a strip of frames with the onset curve under it
and each beat marked.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

# A kick on every half second (a 60 Hz thump with a noise click at its attack) and a soft hi-hat (a
# decaying 7 kHz tone) a quarter second after each.
BEAT = ("0.8*sin(2*PI*60*t)*exp(-18*mod(t,0.5))+0.5*(2*random(0)-1)*exp(-300*mod(t,0.5))"
        "+0.12*sin(2*PI*7000*t)*exp(-40*mod(t+0.25,0.5))")
SETTINGS = ["dream.step='0.4+3*onset(t)'", "motion.zoom='1.05+0.5*loudness(t)'", "fps=12"]


def make_beat(path: str, seconds: float) -> None:
    from dreamvid.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"aevalsrc='{BEAT}':s=44100:d={seconds}",
                    "-c:a", "pcm_s16le", path], check=True)


def picture(frames_dir: str, song: str, fps: float, path: str, shown: int = 8) -> None:
    """Frames from one beat to the one after next, over the whole song's onset and loudness curves."""
    from dreamvid import audio

    names = sorted(os.listdir(frames_dir))
    signals = audio.analyse(song).at_frames(fps, len(names))
    beats = [i for i in range(len(names)) if signals.onset[i] >= 0.75  # the kicks; the hi-hats reach about 0.5
             and signals.onset[i] == max(signals.onset[max(0, i - 2):i + 3])]
    # one beat to the next and the one after: the dream surges at each, and the zoom with the loudness
    b = beats[1] if len(beats) > 1 else 0
    picks = [i for i in range(b - 1, b + 2 * round(fps / 2) + 1) if 0 <= i < len(names)][::2][:shown]
    picks = sorted(set(picks) | {i for i in beats if picks[0] <= i <= picks[-1]})
    tiles = [cv2.resize(cv2.imread(os.path.join(frames_dir, names[i])), (192, 108), interpolation=cv2.INTER_AREA)
             for i in picks]
    h, w = tiles[0].shape[:2]
    for i, tile in zip(picks, tiles):
        label = f"frame {i}" + ("  BEAT" if i in beats else "")
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        if i in beats:
            cv2.rectangle(tile, (0, 0), (w - 1, h - 1), (60, 200, 255), 3)
    strip = np.concatenate(tiles, axis=1)
    plot = np.full((110, strip.shape[1], 3), 255, np.uint8)
    x = lambda t: int(round(t / max(1, len(names) - 1) * (strip.shape[1] - 1)))  # noqa: E731  (the whole song)
    pts = np.array([[x(t), 100 - int(80 * v)] for t, v in enumerate(signals.onset)], np.int32).reshape(-1, 1, 2)
    cv2.polylines(plot, [pts], False, (200, 60, 160), 2, cv2.LINE_AA)
    loud = np.array([[x(t), 100 - int(80 * v)] for t, v in enumerate(signals.loudness)], np.int32).reshape(-1, 1, 2)
    cv2.polylines(plot, [loud], False, (40, 140, 40), 1, cv2.LINE_AA)
    for i in beats:
        cv2.line(plot, (x(i), 10), (x(i), 100), (60, 200, 255), 1)
    cv2.rectangle(plot, (x(picks[0]), 4), (x(picks[-1]), 104), (160, 160, 160), 1)  # the frames shown above
    cv2.putText(plot, "onset(t)", (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 60, 160), 1, cv2.LINE_AA)
    cv2.putText(plot, "loudness(t)", (90, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 140, 40), 1, cv2.LINE_AA)
    cv2.putText(plot, "beats (orange); boxed: the frames above, of the whole song", (200, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 160, 255), 1, cv2.LINE_AA)
    cv2.imwrite(path, np.concatenate([strip, plot], axis=0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("docs", "media"))
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        song = os.path.join(tmp, "beat.wav")
        make_beat(song, a.seconds)
        frames = os.path.join(tmp, "frames")
        common = [f"audio={song}", *SETTINGS, f"width={a.width}", f"height={a.height}", f"device={a.device}",
                  "hydra.run.dir=" + os.path.join(tmp, "run")]
        subprocess.run([sys.executable, "-m", "dreamvid", *common, f"output={frames}/"], check=True)
        picture(frames, song, 12.0, os.path.join(a.out, "music_frames.png"))
    print(f"wrote {os.path.join(a.out, 'music_frames.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
