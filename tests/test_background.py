"""Iterating ahead in a background thread."""
import threading
import time

import pytest

from dreamvid.background import ahead


def test_ahead_keeps_order_and_raises_errors_after_the_items_before_them():
    def items():
        yield from range(5)
        raise ValueError("decoding stopped")

    got = []
    with pytest.raises(ValueError, match="decoding stopped"):
        for x in ahead(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_ahead_runs_at_most_depth_items_ahead_and_stops_with_the_consumer():
    made, closed = [], threading.Event()

    def items():
        try:
            for i in range(1000):
                made.append(threading.current_thread().name)
                yield i
        finally:
            closed.set()

    it = ahead(items(), depth=3)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(made) <= 1 + 3 + 1  # the one consumed, the queue, one waiting to be put
    assert set(made) == {"dreamvid-ahead"}
    it.close()
    assert closed.wait(2) and not any(t.name == "dreamvid-ahead" for t in threading.enumerate())
