#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go:
#   bash scripts/gpu_check.sh [OUTDIR] [BENCH ARGS...]
# 1. tests: the tests that skip without a GPU (CUDA graphs against eager steps in fp32 and bf16, tiles
#    with graphs, GPU memory between sweep jobs) and the fast-path and tiling tests on the GPU;
# 2. zoom, clip, neuron: a smoke render of each mode on the GPU (zoom at 720p, a 60-frame 480p clip with
#    audio, eight channels of the neuron explorer);
# 3. bench: scripts/bench.py with the speed variants worth comparing, as a table and JSON.
# OUTDIR (default gpu-check/) receives seven flat files: summary.txt, tests.log, zoom.log, clip.log,
# neuron.log, bench.log, bench.json; the renders go to a scratch folder. A failing step does not stop the others,
# prints the end of its log, and makes the script exit non-zero. Each step has a time limit
# (STEP_TIMEOUT seconds, default 300; the bench BENCH_TIMEOUT, default 420) so that one hang cannot use
# up the machine. TOTAL_TIMEOUT (seconds, default none) bounds the whole script: the bench, last, gets
# what the other steps left of it, less a margin. A bench stopped by its limit still writes the table and
# the JSON of its rows so far; that counts as done (the summary says so) when some rows were measured.
# The Python is $PYTHON (default python3), with dreamvid importable (installed, or run from the
# repository root) and its requirements installed.
set -u
out=${1:-gpu-check}
shift || true
PY=${PYTHON:-python3}
step_limit=${STEP_TIMEOUT:-300}
total=${TOTAL_TIMEOUT:-0}
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run with a time limit ($limit), log to OUTDIR/NAME.log, report
    local name=$1
    local limit=${limit:-$step_limit}
    shift
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local note=""
    [ $rc -eq 124 ] && note=" (over the ${limit} s limit)"
    if [ $rc -eq 124 ] && [ -n "${partial_ok:-}" ] && "$PY" -c 'import json, sys; sys.exit(not json.load(open(sys.argv[1]))["rows"])' "$partial_ok" 2>/dev/null; then
        note=" (stopped by the ${limit} s limit; the rows measured so far are kept)"
        rc=0
    fi
    echo "$name: exit $rc in $((SECONDS - t0)) s$note" | tee -a "$out/summary.txt"
    if [ $rc -ne 0 ]; then
        status=1
        tail -n 60 "$out/$name.log"
    fi
}

"$PY" - <<'EOF' | tee "$out/summary.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF

step tests "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_fast.py tests/test_tiling.py \
    tests/test_flow.py tests/test_checkpoint.py::test_state_tensors_on_any_device_are_saved_to_the_host \
    tests/test_sweep.py::test_gpu_memory_is_released_between_jobs
step zoom "$PY" -m dreamvid device=cuda frames=24 "output=$scratch/zoom.mp4" overwrite=true progress=false \
    "hydra.run.dir=$scratch/zoom-run"
step neuron "$PY" -m dreamvid mode=neuron device=cuda "channels=first:8" "output=$scratch/neuron" \
    overwrite=true progress=false "hydra.run.dir=$scratch/neuron-run"
step clip "$PY" - "$scratch" <<'EOF'
import subprocess, sys
from dreamvid.video import ffmpeg_exe, probe
out = sys.argv[1]
subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-c:a", "aac", f"{out}/clip.mp4"], check=True)
subprocess.run([sys.executable, "-m", "dreamvid", "mode=video", f"input={out}/clip.mp4", f"output={out}/clip_dream.mp4",
                "device=cuda", "overwrite=true", "progress=false", f"hydra.run.dir={out}/clip-run"], check=True)
m = probe(f"{out}/clip_dream.mp4")
print(m.size, m.fps, m.frames, m.duration, m.has_audio)
assert m.frames == 60 and m.has_audio
EOF
bench_limit=${BENCH_TIMEOUT:-420}
speeds=${BENCH_SPEEDS:-auto,fp32+graphs,bf16+cl+graphs+fold,bf16+cl+graphs+fold+tune}
if [ "$total" -gt 0 ]; then
    left=$((total - SECONDS - 15))  # 15 s for the bench's own exit and this script's
    [ "$left" -lt "$bench_limit" ] && bench_limit=$left
    [ "$bench_limit" -lt 30 ] && bench_limit=30
fi
limit=$bench_limit partial_ok="$out/bench.json" step bench "$PY" scripts/bench.py --speeds "$speeds" \
    --json "$out/bench.json" "$@"
exit $status
