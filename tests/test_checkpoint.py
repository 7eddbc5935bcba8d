"""Resume after a crash: a killed render continues to exactly the frames of an uninterrupted one."""
import os
import signal

import numpy as np
import pytest
import torch

from conftest import read_video, run_cli, start_cli, wait_for_frames
from dreamvid.checkpoint import Checkpoint, find_state, read_state_file, render_key, write_state_file
from dreamvid.errors import DreamvidError

ARGS = ["debug=tiny", "frames=10", "width=96", "height=64", "dream.iterations=3", "seed=5"]


def test_a_damaged_checkpoint_is_one_line_and_an_output_is_claimed_by_one_render(tmp_path):
    out = str(tmp_path / "o.mp4")
    ck = Checkpoint(out, "k")
    ck.save(0, np.zeros((8, 10, 3), np.uint8), {"x": 1})
    with pytest.raises(DreamvidError, match="frame 0 is missing or damaged"):
        ck.read_frame(0, (12, 8))  # another size than the render's
    with open(os.path.join(ck.dir, "state.npz"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(DreamvidError, match="is damaged"):
        ck.load()
    ck.lock()
    with pytest.raises(DreamvidError, match="being rendered by another dreamvid"):
        Checkpoint(out, "k").lock()
    ck.unlock()
    Checkpoint(out, "k").lock()  # free again
    empty = Checkpoint(str(tmp_path / "new.mp4"), "k")
    empty.lock()
    empty.unlock()
    assert not os.path.exists(empty.dir)  # a claim that wrote nothing leaves nothing


def test_checkpoint_round_trip_and_key_mismatch(tmp_path):
    out = str(tmp_path / "o.mp4")
    ck = Checkpoint(out, "k1", {"frames": 3})
    assert ck.load() is None
    frame = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    ck.save(0, frame, {"input": torch.ones(2)})
    nxt, state = ck.load()
    assert nxt == 1 and torch.equal(state["input"], torch.ones(2))
    assert np.array_equal(ck.read_frame(0), frame)
    assert find_state(out) == ck.dir and find_state(str(tmp_path)) == ck.dir
    with pytest.raises(DreamvidError, match="different render"):
        Checkpoint(out, "k2").load()
    data = read_state_file(os.path.join(ck.dir, "state.npz"))
    data["format"] = 3  # as an earlier dreamvid wrote it, whose keys differ
    write_state_file(os.path.join(ck.dir, "state.npz"), data)
    with pytest.raises(DreamvidError, match="earlier dreamvid"):
        Checkpoint(out, "k3").load()
    assert render_key({"a": 1, "progress": True}) == render_key({"a": 1, "progress": False})
    assert render_key({"a": 1}) != render_key({"a": 2})
    assert render_key({"flow": {"method": "dis", "workers": 0}}) == render_key({"flow": {"method": "dis", "workers": 4}})
    assert render_key({"flow": {"method": "dis"}}) != render_key({"flow": {"method": "farneback"}})
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"frames")
    # an input counts by its contents, not by the path it was given as (relative, absolute, moved)
    assert render_key({"input": "clip.mp4"}, (str(clip),)) == render_key({"input": str(clip)}, (str(clip),))
    assert render_key({"input": None}) != render_key({"input": str(clip)}, (str(clip),))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_state_tensors_on_any_device_are_saved_to_the_host(tmp_path, device):
    ck = Checkpoint(str(tmp_path / "o.mp4"), "k")
    dream = torch.rand(1, 3, 4, 5, device=device)
    ck.save_state(2, {"dream": dream, "keyframe": (1.0, 2.0), "more": [dream]})
    nxt, state = ck.load()
    assert nxt == 3 and state["keyframe"] == (1.0, 2.0)
    assert state["dream"].device.type == "cpu" and torch.equal(state["dream"], dream.cpu())
    assert state["more"][0].device.type == "cpu"


def _pngs(folder):
    import cv2

    return [cv2.imread(os.path.join(folder, f)) for f in sorted(os.listdir(folder))]


def test_sigkill_mid_render_then_resume_gives_the_same_frames(tmp_path):
    ref = tmp_path / "ref"
    r = run_cli(ARGS + [f"output={ref}/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr

    out = tmp_path / "run"
    args = ARGS + [f"output={out}/"]
    proc = start_cli(args, str(tmp_path))
    wait_for_frames(str(out) + ".state", 3, proc)
    proc.send_signal(signal.SIGSTOP)  # held mid-render, so it cannot finish while the second command starts
    r = run_cli(args, cwd=str(tmp_path))  # the same output while it is being rendered: refused
    assert r.returncode == 2 and f"being rendered by another dreamvid (process {proc.pid})" in r.stderr, r.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks finished
    r = run_cli(args, cwd=str(tmp_path))  # the same command continues
    assert r.returncode == 0, r.stderr
    got, want = _pngs(out), _pngs(ref)
    assert len(got) == len(want) == 10
    assert all(np.array_equal(a, b) for a, b in zip(got, want))  # bitwise on the CPU
    assert not os.path.exists(str(out) + ".state")


@pytest.mark.parametrize("signum,group,code", [
    (signal.SIGINT, True, 130),  # Ctrl-C: the whole process group, as a terminal sends it (ffmpeg must survive it)
    (signal.SIGTERM, False, 143),  # kill, timeout, docker stop, a cluster's pre-emption: the process alone
    (signal.SIGHUP, True, 129),  # a closed terminal
], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_leaves_a_playable_partial_and_resume_finishes(tmp_path, signum, group, code):
    out = tmp_path / "o.mp4"
    proc = start_cli(ARGS + [f"output={out}"], str(tmp_path))
    wait_for_frames(str(out) + ".state", 2, proc)
    (os.killpg if group else os.kill)(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "stopping after this frame" in stderr and f"resume with: dreamvid resume={out}" in stderr, stderr
    assert "Traceback" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["o.mp4.state"]  # no partial file, no ffmpeg log beside the output
    partial = tmp_path / "o.mp4.state" / "partial.mp4"
    meta, frames = read_video(str(partial))
    assert 2 <= len(frames) < 10
    assert not out.exists() and not (tmp_path / "o.mp4.partial").exists()
    r = run_cli([f"resume={out}", "progress=false", "dream.step=2"], cwd=str(tmp_path))
    assert r.returncode == 2 and "dream.step would be ignored" in r.stderr  # refused, not silently dropped
    r = run_cli([f"resume={out}", "progress=false"], cwd=str(tmp_path.parent))  # from another folder
    assert r.returncode == 0, r.stderr
    assert len(read_video(str(out))[1]) == 10


def test_writer_saves_the_state_first_then_every_few_seconds_and_at_close(tmp_path):
    from dreamvid.checkpoint import CheckpointWriter

    out = str(tmp_path / "o.mp4")
    ck = Checkpoint(out, "k")
    frame = np.zeros((4, 6, 3), np.uint8)
    w = CheckpointWriter(ck, every=3600)
    for i in range(5):
        w.add(i, frame + i, {"i": i})
    w._collect(block=True)
    assert ck.load()[0] == 1  # only the first frame's state so far: frames 1-4 would be dreamed again
    w.close()
    assert ck.load() == (5, {"i": 4}) and all(ck.read_frame(i)[0, 0, 0] == i for i in range(5))


def test_writer_never_saves_a_state_after_a_frame_it_could_not_write(tmp_path):
    from dreamvid.checkpoint import CheckpointWriter

    out = str(tmp_path / "o.mp4")
    ck = Checkpoint(out, "k")
    w = CheckpointWriter(ck, every=0)
    w.add(0, np.zeros((4, 6, 3), np.uint8), {"i": 0})
    w._collect(block=True)
    os.makedirs(ck.frame_path(1))  # frame 1 cannot be written: a folder is in the way
    w.add(1, np.zeros((4, 6, 3), np.uint8), {"i": 1})
    with pytest.raises(DreamvidError, match="cannot write checkpoint frame"):
        w.close()
    assert ck.load() == (1, {"i": 0})


def test_a_state_reaches_the_disk_only_after_the_frames_it_counts(tmp_path, disk_events):
    """After a power cut the state must never name a frame whose data was still in memory."""
    ck = Checkpoint(str(tmp_path / "out.mp4"), "key")
    seen = disk_events
    frame = np.zeros((4, 6, 3), np.uint8)
    for i in range(3):
        ck.save_frame(i, frame)
    ck.save_state(2, {"t": 3})
    state = os.path.join(ck.dir, "state.npz")
    last_frame_flush = max(i for i, e in enumerate(seen) if e[0] == "flush" and e[1].endswith(".png"))
    assert {e[1] for e in seen[:last_frame_flush + 1] if e[0] == "flush"} >= {ck.frame_path(i) for i in range(3)}
    assert ("flush", os.path.dirname(ck.frame_path(0))) in seen  # the frames' names too
    assert seen.index(("rename", state)) > last_frame_flush
    seen.clear()
    ck.save_frame(3, frame)
    ck.save_state(3, {"t": 4})
    assert [e[1] for e in seen if e[0] == "flush" and e[1].endswith(".png")] == [ck.frame_path(3)]  # only the new one
    assert ck.load() == (4, {"t": 4})


def test_a_folder_of_frames_counts_by_its_pictures(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"f{i}.png").write_bytes(bytes([i]) * 100)
    key = render_key({"mode": "video"}, (str(frames),))
    (frames / "notes.txt").write_text("not a frame")
    assert render_key({"mode": "video"}, (str(frames),)) == key  # what is not a picture does not count
    (frames / "f1.png").write_bytes(b"x" * 100)  # a picture in the middle, the same size (an uncompressed export)
    changed = render_key({"mode": "video"}, (str(frames),))
    (frames / "f3.png").write_bytes(b"more")
    assert len({key, changed, render_key({"mode": "video"}, (str(frames),))}) == 3


class _Payload:
    """A pickle that, if it were ever unpickled, would create the file named."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_reading_a_checkpoint_never_runs_code_whoever_made_it(tmp_path):
    import pickle

    ran = tmp_path / "code_ran"
    out = tmp_path / "o.mp4"
    # an earlier dreamvid's pickled state.pt (or one crafted to look like it) in a shared folder
    folder = tmp_path / "o.mp4.state"
    folder.mkdir()
    (folder / "state.pt").write_bytes(pickle.dumps({"key": "k", "next": 1, "state": _Payload(str(ran))}))
    r = run_cli(ARGS + ["frames=2", f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "earlier dreamvid, which this one does not read" in r.stderr, r.stderr
    r = run_cli([f"resume={out}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "earlier dreamvid" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not ran.exists() and (folder / "state.pt").exists()  # never read, never removed
    # a state.npz whose array is an object (a pickle inside the zip): refused as damaged, not run
    import shutil

    shutil.rmtree(folder)
    ck = Checkpoint(str(out), "k")
    ck.save(0, np.zeros((8, 10, 3), np.uint8), {"x": 1})
    with open(os.path.join(ck.dir, "state.npz"), "wb") as f:
        np.savez(f, meta=np.frombuffer(b'{"key": "k", "next": 1, "state": {"$array": 0}}', np.uint8),
                 a0=np.array([_Payload(str(ran))], dtype=object))
    with pytest.raises(DreamvidError, match="is damaged"):
        ck.load()
    r = run_cli([f"resume={out}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "is damaged" in r.stderr
    assert not ran.exists()


def test_weights_files_are_read_without_running_code(tmp_path):
    import pickle

    ran = tmp_path / "code_ran"
    weights = tmp_path / "w.pt"
    weights.write_bytes(pickle.dumps({"conv.weight": _Payload(str(ran))}))
    r = run_cli(ARGS + ["frames=1", f"model.weights={weights}", f"output={tmp_path / 'o.png'}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "cannot read model weights" in r.stderr and not ran.exists(), r.stderr


def test_a_checkpoint_state_round_trips_exactly(tmp_path):
    state = {"t": 7, "source": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "dream": torch.rand(1, 3, 2, 4),
             "keyframe": (0.1 + 0.2, 1e-300), "maturity": None, "names": ["a", "b"], "nested": {"x": [1.5, (2, 3)]}}
    path = str(tmp_path / "s.npz")
    write_state_file(path, {"state": state})
    back = read_state_file(path)["state"]
    assert back["t"] == 7 and back["keyframe"] == (0.1 + 0.2, 1e-300) and back["maturity"] is None
    assert np.array_equal(back["source"], state["source"]) and back["source"].dtype == np.uint8
    assert torch.equal(back["dream"], state["dream"]) and back["nested"] == {"x": [1.5, (2, 3)]}
