"""Finished files reach the disk before the rename that makes them final."""
import os

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


def test_place_never_replaces_what_appeared_and_keeps_the_finished_file_beside_it(tmp_path):
    out = tmp_path / "dream.mp4"
    tmp = tmp_path / "a.partial"
    tmp.write_bytes(b"render")
    assert files.place(str(tmp), str(out)) == str(out) and out.read_bytes() == b"render"
    for n, mine in ((2, b"mine"), (3, b"mine too")):
        tmp.write_bytes(b"render %d" % n)
        got = files.place(str(tmp), str(out))
        assert got == str(tmp_path / f"dream-{n}.mp4") and open(got, "rb").read() == b"render %d" % n
        assert out.read_bytes() == b"render" and not tmp.exists()  # nothing at either name lost


def test_place_replaces_only_the_very_file_it_was_allowed_to(tmp_path):
    out = tmp_path / "dream.mp4"
    out.write_bytes(b"old render")
    allowed = files.identity(str(out))
    tmp = tmp_path / "a.partial"
    tmp.write_bytes(b"new")
    assert files.place(str(tmp), str(out), allowed) == str(out) and out.read_bytes() == b"new"
    out.unlink()
    out.write_bytes(b"the user's, made meanwhile")  # another file: not the one overwrite=true allowed
    tmp.write_bytes(b"newer")
    assert files.place(str(tmp), str(out), allowed) == str(tmp_path / "dream-2.mp4")
    assert out.read_bytes() == b"the user's, made meanwhile"


def test_a_folder_is_moved_without_replacing_a_folder_or_file_that_appeared(tmp_path):
    for blocker in ("folder", "file"):
        out = tmp_path / f"frames_{blocker}"
        if blocker == "folder":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
        else:
            out.write_text("mine")
        tmp = tmp_path / f"{blocker}.partial"
        tmp.mkdir()
        (tmp / "frame_000000.png").write_bytes(b"png")
        got = files.place(str(tmp), str(out))
        assert got == str(out) + "-2" and os.listdir(got) == ["frame_000000.png"]
        assert (out / "notes.txt").read_text() == "mine" if blocker == "folder" else out.read_text() == "mine"


def test_without_renameat2_the_fallbacks_refuse_to_replace_too(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_renameat2", None)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("new")
    b.write_text("mine")
    assert not files.move_no_clobber(str(a), str(b)) and b.read_text() == "mine" and a.exists()
    d, e = tmp_path / "d", tmp_path / "e"
    d.mkdir()
    e.mkdir()
    (e / "x").write_text("mine")
    assert not files.move_no_clobber(str(d), str(e)) and (e / "x").read_text() == "mine"
    b.unlink()
    assert files.move_no_clobber(str(a), str(b)) and b.read_text() == "new" and not a.exists()


def test_temporary_files_are_new_and_finished_ones_get_the_usual_permissions(tmp_path):
    first = files.temp_file(str(tmp_path), "dream.mp4")
    second = files.temp_file(str(tmp_path), "dream.mp4")
    assert first != second and os.path.basename(first).startswith("dream.mp4.") and first.endswith(".partial")
    assert os.stat(first).st_mode & 0o777 == 0o666 & ~files._UMASK
    assert os.stat(files.temp_folder(str(tmp_path), "frames")).st_mode & 0o777 == 0o777 & ~files._UMASK


def test_a_folder_of_the_users_is_refused_or_rendered_beside_and_only_dreamvids_files_go(tmp_path):
    import pytest

    from dreamvid.errors import DreamvidError

    def ours(name):
        return name in ("lock", "frames")

    folder = tmp_path / "o.mp4.state"
    folder.mkdir()
    (folder / "notes.txt").write_text("months of work")
    with pytest.raises(DreamvidError, match=r"is not a folder dreamvid made \(it holds notes.txt\).*overwrite=true"):
        files.claim_folder(str(folder), "the checkpoint of o.mp4", ours)
    files.claim_folder(str(folder), "the checkpoint of o.mp4", ours, overwrite=True)
    (folder / "lock").write_text("1")
    (folder / "frames").mkdir()
    assert files.release_folder(str(folder), ours) == ["notes.txt"]
    assert sorted(os.listdir(folder)) == ["notes.txt"]  # the marker goes too: the folder is the user's again
    (folder / "frames").mkdir()  # a name dreamvid writes: not even overwrite=true renders beside it
    with pytest.raises(DreamvidError, match="move it away, or choose another output=$"):
        files.claim_folder(str(folder), "the checkpoint of o.mp4", ours, overwrite=True)
    mine = tmp_path / "f.state"
    mine.write_text("a file")
    with pytest.raises(DreamvidError, match="is a file"):
        files.claim_folder(str(mine), "the checkpoint of f", ours, overwrite=True)
    new = tmp_path / "n.state"
    files.claim_folder(str(new), "the checkpoint of n", ours)
    assert files.owned(str(new)) and files.release_folder(str(new), ours) == [] and not new.exists()
