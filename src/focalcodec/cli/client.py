"""``focalcodec client``: stream a file or the microphone through ``focalcodec serve``.

::

    focalcodec client http://127.0.0.1:8000 speech.wav -o speech.fcz          # encode
    focalcodec client http://127.0.0.1:8000 speech.wav -o rec.wav -o rec.fcz  # resynth
    focalcodec client http://127.0.0.1:8000 speech.fcz -o speech.wav          # decode
    focalcodec client http://127.0.0.1:8000 --mic --play --realtime           # live
    focalcodec client http://127.0.0.1:8000 --room demo --listen -o heard.wav

The direction follows from the input and outputs: a ``.fcz`` input is decoded; audio
with an audio output (or ``--play``) is resynthesised; audio with only a ``.fcz`` or
``.npy`` output is encoded. Needs the ``serve`` extra (``websockets``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
import websockets  # the serve extra: without it the dispatcher prints the install hint

from ..errors import FocalCodecError, UsageError
from .options import positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``focalcodec client`` to ``parser``."""
    parser.add_argument("server", help="the server: http(s)://HOST:PORT or ws(s)://...")
    parser.add_argument("input", nargs="?", help="audio or .fcz file (or --mic)")
    parser.add_argument("--mic", action="store_true", help="stream the microphone")
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="FILE",
        help=".fcz (the tokens as a file), .npy (token ids) or audio; repeatable",
    )
    parser.add_argument("--play", action="store_true", help="play the decoded audio")
    parser.add_argument("-m", "--model", help="a model the server serves")
    parser.add_argument("--voice", help="a voice the server serves (kNN conversion)")
    parser.add_argument(
        "--realtime", action="store_true", help="send a file at its real-time pace"
    )
    parser.add_argument(
        "--room", metavar="NAME", help="send to (or --listen to) a room"
    )
    parser.add_argument("--listen", action="store_true", help="listen to --room")
    parser.add_argument(
        "--duration", type=positive_int, metavar="S", help="--mic: stop after S s"
    )
    parser.add_argument("--api-key-file", metavar="FILE", help="the server's API key")
    parser.add_argument("--force", action="store_true", help="overwrite outputs")


def run(args: argparse.Namespace) -> int:
    """Run ``focalcodec client``; returns the exit status."""
    from ..serve.config import read_key

    kinds = [_kind(path) for path in args.output]
    _check(args, kinds)
    key = read_key(args.api_key_file) if args.api_key_file else None
    result = asyncio.run(_session(args, kinds, key))
    if not result.ok:
        raise FocalCodecError(f"the server ended the stream: {result.error}")
    _write_outputs(args, kinds, result)
    latencies = np.asarray(result.latencies) * 1000
    line = f"{len(result.toks)} tokens, {len(result.fcz)} bytes of .fcz"
    if len(result.audio):
        line += f", {len(result.audio) / result.sample_rate:.2f} s of audio"
    if len(latencies):
        p50, p99 = np.percentile(latencies, [50, 99])
        line += f"; block-to-result p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    print(line)
    return 0


def _kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".fcz": "fcz", ".npy": "npy"}.get(suffix, "audio")


def _check(args: argparse.Namespace, kinds: list[str]) -> None:
    if args.listen:
        if not args.room or args.input or args.mic:
            raise UsageError("--listen takes --room NAME and no input")
        return
    if bool(args.input) == bool(args.mic):
        raise UsageError("give exactly one source: an INPUT file or --mic")
    if not kinds and not args.play:
        raise UsageError("give an output (-o FILE) or --play")
    if args.input and Path(args.input).suffix.lower() == ".fcz" and kinds != ["audio"]:
        if set(kinds) - {"audio"}:
            raise UsageError("a .fcz input gives audio: use audio outputs only")


def _url(server: str, args: argparse.Namespace) -> str:
    base = server.rstrip("/")
    for old, new in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(old):
            base = new + base[len(old) :]
    if not base.startswith(("ws://", "wss://")):
        raise UsageError(f"server {server!r}: give http(s)://HOST:PORT or ws(s)://...")
    return f"{base}/v1/rooms/{args.room}" if args.room else f"{base}/v1/stream"


async def _session(args: argparse.Namespace, kinds: list[str], key: str | None):
    from ..serve import client

    url = _url(args.server, args)
    player = _player() if args.play else None
    on_frame = player.on_frame if player else None
    try:
        if args.listen:
            return await client.listen(url, api_key=key)
        if args.input and Path(args.input).suffix.lower() == ".fcz":
            data = Path(args.input).read_bytes()
            return await client.stream_fcz(
                url, data, model=args.model, voice=args.voice, api_key=key,
                room=bool(args.room), realtime=args.realtime,
            )  # fmt: skip
        samples, rate = _source(args)
        direction = "resynth" if "audio" in kinds or args.play else "encode"
        return await client.stream_audio(
            url, samples, rate, direction=direction, model=args.model,
            voice=args.voice, api_key=key, realtime=args.realtime,
            room=bool(args.room), on_frame=on_frame,
        )  # fmt: skip
    except (OSError, websockets.exceptions.WebSocketException) as exc:
        raise FocalCodecError(f"cannot stream through {url}: {exc}") from None
    finally:
        if player is not None:
            player.close()


def _source(args: argparse.Namespace):
    """The audio to send: a file's samples (its own rate), or the microphone."""
    if args.input:
        from ..files.audio import read_audio

        audio = read_audio(args.input)
        return audio.sig, audio.sample_rate
    return _mic(args.duration), 16000


async def _mic(duration: int | None):
    sd = _sounddevice()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def callback(data, frames, when, status) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, data[:, 0].copy())

    sent, limit = 0, None if duration is None else duration * 16000
    with sd.InputStream(16000, 320, channels=1, dtype="float32", callback=callback):
        while limit is None or sent < limit:
            piece = await queue.get()
            sent += len(piece)
            yield piece


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise FocalCodecError(
            f"--mic and --play need sounddevice ({exc}): pip install 'focalcodec[stream]'"
        ) from None
    return sounddevice


class _Player:
    """Plays decoded audio frames as they arrive."""

    def __init__(self) -> None:
        self.stream = None
        self.sd = _sounddevice()

    def on_frame(self, kind: int, value) -> None:
        from ..serve.protocol import AUDIO, EVENT

        if kind == EVENT and value.get("event") == "ready" and self.stream is None:
            rate = value["sample_rate_output"]
            self.stream = self.sd.OutputStream(rate, channels=1, dtype="float32")
            self.stream.start()
        elif kind == AUDIO and self.stream is not None:
            self.stream.write(np.clip(value, -1, 1)[:, None])

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def _player() -> _Player:
    return _Player()


def _write_outputs(args: argparse.Namespace, kinds: list[str], result) -> None:
    from ..files.atomic import atomic_write
    from ..files.audio import save_audio

    inputs = [args.input] if args.input else []
    for path, kind in zip(args.output, kinds, strict=True):
        if kind == "audio":
            save_audio(path, result.audio, result.sample_rate, force=args.force)
            continue
        with atomic_write(path, force=args.force, inputs=inputs) as fileobj:
            if kind == "fcz":
                if not result.fcz:
                    raise FocalCodecError(f"{path}: the server sent no .fcz stream")
                fileobj.write(result.fcz)
            else:
                np.save(fileobj, result.toks)
