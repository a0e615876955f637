"""one_thread: a call made while another thread is inside is refused at once."""

from __future__ import annotations

import threading

import pytest

from focalcodec.errors import StreamingError
from focalcodec.streaming.guard import one_thread


class Box:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = threading.Event()
        self.release = threading.Event()

    @one_thread
    def wait(self) -> str:
        self.inside.set()
        assert self.release.wait(10)
        return "done"

    @one_thread
    def quick(self) -> str:
        return "quick"


def test_a_second_thread_is_refused_and_the_first_finishes():
    box, out = Box(), []
    worker = threading.Thread(target=lambda: out.append(box.wait()))
    worker.start()
    assert box.inside.wait(10)
    with pytest.raises(StreamingError, match=r"quick\(\) while another thread"):
        box.quick()
    box.release.set()
    worker.join(10)
    assert out == ["done"] and box.quick() == "quick"


def test_the_lock_is_released_after_an_exception():
    class Failing(Box):
        @one_thread
        def boom(self) -> None:
            raise ValueError("inside")

    box = Failing()
    with pytest.raises(ValueError):
        box.boom()
    assert box.quick() == "quick"
