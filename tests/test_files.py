"""Finished files reach the disk before the rename that makes them final (Linux: fds named via /proc)."""
import os

import pytest

from dreamvid import files


@pytest.fixture
def events(monkeypatch):
    """What is flushed and renamed, in order."""
    seen = []
    fsync, rename = os.fsync, os.replace

    def record_fsync(fd):
        seen.append(("flush", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(a, b):
        seen.append(("rename", str(a), str(b)))
        rename(a, b)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    return seen


def test_a_file_is_flushed_before_its_rename_and_its_folder_after(tmp_path, events):
    tmp, path = tmp_path / "v.mp4.partial", tmp_path / "v.mp4"
    tmp.write_bytes(b"frames")
    files.replace(str(tmp), str(path))
    assert events == [("flush", str(tmp)), ("rename", str(tmp), str(path)), ("flush", str(tmp_path))]
    assert path.read_bytes() == b"frames"


def test_a_folder_of_frames_is_flushed_file_by_file_before_its_rename(tmp_path, events):
    tmp = tmp_path / "frames.partial"
    tmp.mkdir()
    for i in range(3):
        (tmp / f"frame_{i:06d}.png").write_bytes(b"png")
    files.replace(str(tmp), str(tmp_path / "frames"))
    flushed = [e[1] for e in events[:events.index(("rename", str(tmp), str(tmp_path / "frames")))]]
    assert flushed == [str(tmp / f"frame_{i:06d}.png") for i in range(3)] + [str(tmp)]
    assert events[-1] == ("flush", str(tmp_path))


def test_flushing_what_cannot_be_opened_is_left_alone(tmp_path):
    files.flush(str(tmp_path / "missing"))  # best effort: no error
