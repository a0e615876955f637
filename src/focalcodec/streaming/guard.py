"""One thread at a time in a stateful object (a streaming session).

A session keeps one stream's state between calls; two threads calling it at once would
interleave two streams and return wrong tokens or audio without an error. Methods
decorated with :func:`one_thread` take the object's ``_lock`` (a
:class:`threading.Lock`) without waiting, and refuse the call with
:class:`~focalcodec.errors.StreamingError` when another thread holds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StreamingError

__all__ = ["one_thread"]

Method = TypeVar("Method", bound=Callable[..., Any])


def one_thread(method: Method) -> Method:
    """Run ``method`` holding ``self._lock``, or raise at once if another thread does."""

    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        if not self._lock.acquire(blocking=False):
            raise StreamingError(
                f"{method.__name__}() while another thread is inside this session: it "
                "holds one stream's state; use one session per thread"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()

    return call  # type: ignore[return-value]
