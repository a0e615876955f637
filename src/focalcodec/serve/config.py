"""What a server is started with: :class:`ServeConfig`, one dataclass.

The command line (``focalcodec serve``) fills it in; tests and the benchmark build one
directly and pass it to :func:`focalcodec.serve.app.create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

__all__ = ["LOOPBACK_HOSTS", "ServeConfig", "is_loopback", "public_name", "read_key"]

LOOPBACK_HOSTS = ("localhost",)


@dataclass
class ServeConfig:
    """Everything a server needs to start.

    Attributes
    ----------
    models
        Model sources served (packaged names, Hub ids, local folders), loaded at start;
        clients name them by :func:`public_name` and never by path.
    host, port
        Where to listen. Any host but a loopback one requires ``api_key``.
    device, fast
        Where models run and their fast mode (:func:`focalcodec.deploy.fast.optimize`).
    random_weights
        Build the models from their configs with random weights (benchmarks only).
    max_sessions
        Live sessions (streams and rooms) at once; more are refused with code 1013.
    max_batch
        Rows of one batched model step; sessions past it wait for the next tick.
    api_key
        The key every request must carry (Bearer header, start message or subprotocol).
    allow_origins
        Origins whose pages may open WebSockets, besides the server's own ("*": any).
    banks
        Voice name -> speaker bank file, for kNN conversion.
    max_upload_mb, max_message_kb
        Size caps of an HTTP upload and of one WebSocket message.
    max_session_seconds, idle_seconds
        Wall-clock cap of a live session, and of the silence between two messages.
    max_listeners
        Listeners per room.
    max_buffered_seconds
        Audio a session may hold unprocessed before the server stops reading it.
    """

    models: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    fast: str = "exact"
    random_weights: bool = False
    max_sessions: int = 64
    max_batch: int = 64
    api_key: str | None = None
    allow_origins: list[str] = field(default_factory=list)
    banks: dict[str, str] = field(default_factory=dict)
    max_upload_mb: float = 100.0
    max_message_kb: int = 256
    max_session_seconds: float = 3600.0
    idle_seconds: float = 30.0
    max_listeners: int = 64
    max_buffered_seconds: float = 10.0

    def check(self) -> None:
        """Refuse settings that cannot work (raises :class:`UsageError`)."""
        if not self.models:
            raise UsageError("give at least one model to serve (-m MODEL)")
        names = [public_name(m) for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"two served models share the name {twice[0]}")
        if not is_loopback(self.host) and not self.api_key:
            raise UsageError(
                f"--host {self.host} is reachable from other machines: give "
                "--api-key-file FILE (or bind 127.0.0.1)"
            )
        for name, value in (
            ("--max-sessions", self.max_sessions),
            ("--max-batch", self.max_batch),
        ):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        for name, value in (
            ("--max-upload-mb", self.max_upload_mb),
            ("--max-session-seconds", self.max_session_seconds),
            ("--idle-seconds", self.idle_seconds),
        ):
            if not value > 0:
                raise UsageError(f"{name} must be positive, got {value}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_kb * 1024)


def public_name(source: str) -> str:
    """How clients name a served model: a local folder or file by its base name
    (without ``.json``), a packaged name or Hub id as it is."""
    path = Path(os.path.expanduser(source))
    if path.exists():
        return path.stem if path.suffix == ".json" else path.name
    return source


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_key(path: str | os.PathLike) -> str:
    """The API key in ``path`` (its first line, stripped); raises :class:`UsageError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--api-key-file {path}: cannot read it ({exc})") from None
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if len(key) < 16:
        raise UsageError(
            f"--api-key-file {path}: the key must be at least 16 characters "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not all(c.isalnum() or c in "-._~" for c in key):
        raise UsageError(
            f"--api-key-file {path}: use only letters, digits and -._~ in the key "
            "(it travels in HTTP headers and WebSocket subprotocols)"
        )
    return key
