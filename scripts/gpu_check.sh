#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go, with everything they print kept in one folder:
#   bash scripts/gpu_check.sh [OUTDIR] [BENCH ARGS...]
# 1. the tests that skip without a GPU (CUDA graphs against eager steps, GPU memory between sweep jobs)
#    and the fast-path and tiling tests on the GPU;
# 2. a smoke render of each mode on the GPU (zoom at 720p, a 60-frame 480p clip in video mode);
# 3. scripts/bench.py with the speed variants worth comparing, as a table and JSON.
# Each step's log and the bench JSON land in OUTDIR (default gpu-check/); a failing step does not stop
# the others, and the script exits non-zero if any failed.
set -u
out=${1:-gpu-check}
shift || true
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log to OUTDIR/NAME.log, report
    local name=$1
    shift
    local t0=$SECONDS
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
    [ $rc -eq 0 ] || status=1
}

python - <<'EOF' | tee "$out/summary.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF

step tests python -m pytest -q -rs tests/test_fast.py tests/test_tiling.py \
    tests/test_sweep.py::test_gpu_memory_is_released_between_jobs
step zoom python -m dreamvid device=cuda frames=24 "output=$out/zoom.mp4" overwrite=true progress=false \
    "hydra.run.dir=$out/zoom-run"
step clip python - "$out" <<'EOF'
import subprocess, sys
from dreamvid.video import ffmpeg_exe
out = sys.argv[1]
subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-c:a", "aac", f"{out}/clip.mp4"], check=True)
subprocess.run([sys.executable, "-m", "dreamvid", "mode=video", f"input={out}/clip.mp4", f"output={out}/clip_dream.mp4",
                "device=cuda", "overwrite=true", "progress=false", f"hydra.run.dir={out}/clip-run"], check=True)
from dreamvid.video import probe
m = probe(f"{out}/clip_dream.mp4")
print(m.size, m.fps, m.frames, m.duration, m.has_audio)
assert m.frames == 60 and m.has_audio
EOF
step bench python scripts/bench.py --speeds auto,fp32+graphs,bf16+cl+graphs --json "$out/bench.json" "$@"
exit $status
