"""Progress where stderr is a file: a line now and then, and one at the end."""
import io

from dreamvid.progress import Lines, progress


def test_lines_say_where_the_render_is_every_few_seconds_and_at_the_end(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("dreamvid.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = Lines(20, "dreaming", stream=out, every=10.0)
    for _ in range(20):
        clock[0] += 3.0  # 3 s a frame
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # after 12, 24, 36, 48 and 60 s (the last frame: nothing more to say at the end)
    assert lines[0] == "dreamvid: dreaming 4/20 frames (20%) 3.00 s/frame 0:48 left"
    assert lines[-1].startswith("dreamvid: dreaming 20/20 frames (100%)")


def test_a_pipe_gets_lines_and_nothing_when_disabled(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress(5, "x", True), Lines)
    quiet = progress(5, "x", False)
    quiet.update(5)
    quiet.close()
    assert __import__("sys").stderr.getvalue() == ""
