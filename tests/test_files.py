"""Finished files reach the disk before the rename that makes them final."""
from dreamvid import files


def test_a_file_is_flushed_before_its_rename_and_its_folder_after(tmp_path, disk_events):
    tmp, path = tmp_path / "v.mp4.partial", tmp_path / "v.mp4"
    tmp.write_bytes(b"frames")
    files.replace(str(tmp), str(path))
    assert disk_events == [("flush", str(tmp)), ("rename", str(path)), ("flush", str(tmp_path))]
    assert path.read_bytes() == b"frames"


def test_a_folder_of_frames_is_flushed_file_by_file_before_its_rename(tmp_path, disk_events):
    tmp = tmp_path / "frames.partial"
    tmp.mkdir()
    for i in range(20):
        (tmp / f"frame_{i:06d}.png").write_bytes(b"png")
    files.replace(str(tmp), str(tmp_path / "frames"))
    flushed = [e[1] for e in disk_events[:disk_events.index(("rename", str(tmp_path / "frames")))]]
    assert sorted(flushed[:-1]) == [str(tmp / f"frame_{i:06d}.png") for i in range(20)] and flushed[-1] == str(tmp)
    assert disk_events[-1] == ("flush", str(tmp_path))


def test_flushing_what_cannot_be_opened_is_left_alone(tmp_path):
    files.flush(str(tmp_path / "missing"))  # best effort: no error
