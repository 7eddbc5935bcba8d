"""Work done in a background thread, a bounded number of items ahead of the thread that uses it."""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, Tuple, TypeVar

T = TypeVar("T")


def ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` items ahead of the consumer.

    An exception from `items` is raised in the consumer after the items before it, in order. When
    the consumer stops early, the thread stops too and `items` is closed (in that thread).
    """
    box: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it: Any = None
        try:
            it = iter(items)
            for item in it:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put("error", e)
        finally:
            close = getattr(it, "close", None) if it is not None else None
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="dreamvid-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
