"""Running a service's `run(stop)` loop in a thread for the length of a test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def running(run: Callable[[threading.Event], None], name: str) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name=name)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), f"{name} did not stop"
