"""``focalcodec stream``: run a causal model block by block, as it would run live.

The source is an audio file or the microphone; the result goes to a file, the speakers,
both or nowhere (to measure speed only). Every block of ``chunk_size`` samples (80 ms for
the released models) is encoded and decoded by a :class:`~focalcodec.streaming.session.
StreamingSession`, and its compute time is printed with its real-time factor (compute
time / audio duration; below 1 keeps up with live audio). Microphone and speakers need
the optional ``stream`` extra (sounddevice). ``--backend onnx --model DIR`` runs an ONNX
export of a causal model (:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec`) instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClippingWarning, FocalCodecError
from ..pretrained import DEFAULT_STREAMING_MODEL as DEFAULT_MODEL
from .options import (
    add_backend,
    add_device,
    add_kernels,
    add_threads,
    open_models,
    positive_int,
    torch_device,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``focalcodec stream`` to ``parser``."""
    parser.add_argument("input", nargs="?", help="audio file to stream (or use --mic)")
    parser.add_argument("--mic", action="store_true", help="stream from the microphone")
    parser.add_argument("-o", "--output", help="write the decoded audio to this file")
    parser.add_argument("--play", action="store_true", help="play it on the speakers")
    parser.add_argument(
        "-m",
        "--model",
        help="causal model: packaged name, repo id or directory (default: "
        f"{DEFAULT_MODEL}); with --backend onnx, the export folder",
    )
    add_backend(parser)
    parser.add_argument(
        "--pad",
        choices=("none", "zeros", "edge"),
        help="completion of the last partial 80 ms block: none (exact offline result; "
        "default for torch), zeros (default for onnx, whose graphs take whole blocks) "
        "or edge",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="build --model from its config with random weights (speed tests only)",
    )
    parser.add_argument(
        "--ref",
        nargs="+",
        metavar="FILE",
        help="reference audio files or folders: convert to this voice",
    )
    parser.add_argument(
        "--ref-model",
        metavar="MODEL",
        help="model whose encoder features of --ref form the matching set (default: "
        "--model; the original package's demo used focalcodec_50hz)",
    )
    parser.add_argument(
        "--bank", metavar="FILE", help="speaker bank (.safetensors) to convert to"
    )
    parser.add_argument(
        "--topk",
        type=positive_int,
        default=4,
        metavar="K",
        help="kNN neighbours (default: 4)",
    )
    parser.add_argument(
        "--chunks-per-step",
        type=positive_int,
        default=1,
        metavar="N",
        help="80 ms blocks per model call: more is faster but adds latency (default: 1)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds of input",
    )
    add_device(parser, "cpu")
    parser.add_argument(
        "--fast",
        metavar="MODE",
        default="exact",
        help="opt-in fast mode of focalcodec.deploy.fast: exact (default), int8, "
        "int8-decoder, bf16, fp16, compile (speed and agreement: docs/performance.md)",
    )
    add_threads(
        parser, "CPU threads (of torch, or of ONNX Runtime with --backend onnx)"
    )
    add_kernels(parser)
    parser.add_argument(
        "--stats", metavar="FILE", help="write the per-block timings as JSON here"
    )
    parser.add_argument("--force", action="store_true", help="overwrite outputs")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print the summary only"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``focalcodec stream``; returns the exit status."""
    problem = _check_arguments(args)
    if problem:
        print(f"focalcodec: error: {problem}", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = _load_model(args)
    rate = codec.sample_rate_input
    stats = _Stats(codec.chunk_size * args.chunks_per_step / rate, rate)
    with ExitStack() as stack:
        session = _open_session(codec, args)
        sinks = _open_sinks(stack, args, codec.sample_rate_output)
        blocks = _source(stack, args, codec, stats.block_seconds)
        try:
            for block in blocks:
                start = time.perf_counter()
                out = session.process(block)
                stats.add(time.perf_counter() - start, len(block))
                _deliver(sinks, out)
                if not args.quiet:
                    print(stats.line(), flush=True)
        except KeyboardInterrupt:
            print("stopped; finishing the stream", file=sys.stderr)
        tail = session.flush()
        _deliver(sinks, tail.sig)
    print(stats.summary(), flush=True)
    if args.stats:
        inputs = [p for p in (args.input, *(args.ref or ()), args.bank) if p]
        _write_stats(Path(args.stats), stats, codec, args.force, inputs)
    return 0


def _check_arguments(args: argparse.Namespace) -> str | None:
    if bool(args.input) == bool(args.mic):
        return "give exactly one source: an INPUT file or --mic"
    if args.ref and args.bank:
        return "--ref and --bank both give a target voice: use one"
    if args.ref_model and not args.ref:
        return "--ref-model applies to --ref recordings: give --ref FILES too"
    if args.backend == "onnx":
        problem = _check_onnx_arguments(args)
        if problem:
            return problem
    if args.duration is not None and not args.duration > 0:
        return f"--duration must be positive, got {args.duration}"
    return _check_outputs(args)


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Outputs decided on resolved paths: never an input (the source, references,
    bank: any spelling, symlink or hard link), never each other, and an existing one
    only with --force."""
    from ..files.atomic import OutputExistsError, check_output, resolve

    inputs = [p for p in (args.input, *(args.ref or ()), args.bank) if p]
    outputs = [p for p in (args.output, args.stats) if p]
    if len(outputs) == 2 and resolve(outputs[0]) == resolve(outputs[1]):
        return f"-o and --stats name the same file {args.output}"
    for output in outputs:
        try:
            check_output(output, force=args.force, inputs=inputs)
        except OutputExistsError as exc:
            if "its own input" in str(exc):
                return f"{output}: the output would overwrite the input"
            return str(exc)
    return None


def _check_onnx_arguments(args: argparse.Namespace) -> str | None:
    if args.ref or args.bank:
        return (
            "--ref/--bank need the PyTorch model: the ONNX export has no kNN voice "
            "conversion; use --backend torch"
        )
    if args.random_weights:
        return "--random-weights builds a PyTorch model: use --backend torch"
    if args.fast != "exact":
        return f"--fast {args.fast} applies to the PyTorch model: use --backend torch"
    if args.pad == "none":
        return (
            "--pad none needs partial blocks, which the ONNX step graphs cannot run: "
            "use --pad zeros or edge, or --backend torch"
        )
    return None


def _load_model(args: argparse.Namespace):
    from ..pipeline.models import load_codec

    if args.backend == "onnx":
        codec = open_models(args).get(args.model)
        if not codec.causal:
            raise FocalCodecError(
                f"--model {args.model} is an ONNX export of a model that is not causal: "
                "streaming needs a causal model, exported with its streaming graphs"
            )
        return codec
    device = torch_device(args.device)
    model = args.model or DEFAULT_MODEL
    weights = not args.random_weights
    return load_codec(model, device, fast=args.fast, weights=weights)


def _open_session(codec, args: argparse.Namespace):
    from ..streaming.session import StreamingSession

    matching_set = None
    if args.ref:
        from ..pipeline.banks import matching_set_from_files
        from .vc import _expand_references

        encoder = codec
        if args.ref_model:
            from ..pipeline.models import load_codec

            encoder = load_codec(args.ref_model, codec.device)
        matching_set = matching_set_from_files(encoder, _expand_references(args.ref))
    elif args.bank:
        from ..pipeline.banks import load_bank

        matching_set = load_bank(args.bank, codec)
    default_pad = "zeros" if args.backend == "onnx" else "none"
    return StreamingSession(
        codec,
        matching_set=matching_set,
        topk=args.topk,
        pad=args.pad or default_pad,
        chunks_per_step=args.chunks_per_step,
    )


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise FocalCodecError(
            f"--mic and --play need sounddevice ({exc}); install it with: pip install "
            "'focalcodec[stream]'"
        ) from None
    return sounddevice


def _source(
    stack: ExitStack, args: argparse.Namespace, codec, block_seconds: float
) -> Iterator[np.ndarray]:
    rate = codec.sample_rate_input
    size = round(block_seconds * rate)
    limit = None if args.duration is None else round(args.duration * rate)
    if args.mic:
        sd = _sounddevice()
        stream = stack.enter_context(
            sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=size)
        )
        return _mic_blocks(stream, size, limit)
    return _file_blocks(stack, args.input, rate, size, limit)


def _file_blocks(
    stack: ExitStack, path: str, rate: int, size: int, limit: int | None
) -> Iterator[np.ndarray]:
    """Blocks of a file of any length, read and resampled piece by piece."""
    from ..files.audio import AudioReader

    reader = stack.enter_context(AudioReader(path, rate))
    total = reader.num_samples if limit is None else min(limit, reader.num_samples)
    for start in range(0, total, size):
        yield reader[:, start : min(start + size, total)][0]
    if reader.clipping:
        warnings.warn(f"{path}: {reader.clipping}", ClippingWarning, stacklevel=2)


def _mic_blocks(stream: Any, size: int, limit: int | None) -> Iterator[np.ndarray]:
    done = 0
    while limit is None or done < limit:
        want = size if limit is None else min(size, limit - done)
        data, overflowed = stream.read(want)
        if overflowed:
            print("warning: input overflow (audio was dropped)", file=sys.stderr)
        done += want
        yield np.asarray(data, dtype=np.float32).reshape(-1)


def _open_sinks(stack: ExitStack, args: argparse.Namespace, rate: int) -> list:
    sinks = []
    if args.output:
        import soundfile as sf

        from ..files.atomic import atomic_write
        from ..files.audio import audio_format

        path = Path(args.output)
        inputs = [p for p in (args.input, *(args.ref or ()), args.bank) if p]
        fileobj = stack.enter_context(
            atomic_write(path, force=args.force, inputs=inputs)
        )
        sinks.append(
            stack.enter_context(
                sf.SoundFile(fileobj, "w", rate, 1, format=audio_format(path))
            )
        )
    if args.play:
        sd = _sounddevice()
        stream = sd.OutputStream(samplerate=rate, channels=1, dtype="float32")
        sinks.append(stack.enter_context(stream))
    return sinks


def _deliver(sinks: list, sig) -> None:
    if not sinks or sig.shape[1] == 0:
        return
    block = sig[0].detach().to("cpu").float().numpy()
    # 16-bit files would wrap around, and speakers distort, past full scale.
    block = np.clip(block, -1.0, 1.0)[:, None]
    for sink in sinks:
        sink.write(block)


class _Stats:
    """Compute time of every block, and the lines printed about them."""

    def __init__(self, block_seconds: float, rate: int) -> None:
        self.block_seconds = block_seconds
        self.rate = rate
        self.times: list[float] = []
        self.samples = 0

    def add(self, seconds: float, samples: int) -> None:
        self.times.append(seconds)
        self.samples += samples

    def real_time_factor(self) -> float:
        """Total compute time over the duration of the audio streamed."""
        return sum(self.times) * self.rate / max(self.samples, 1)

    def line(self) -> str:
        n, t = len(self.times), self.times[-1]
        return (
            f"block {n:5d}  at {(n - 1) * self.block_seconds:8.2f} s  compute "
            f"{1000 * t:7.1f} ms  rtf {t / self.block_seconds:5.2f}"
        )

    def percentiles(self) -> dict[str, float]:
        ms = np.asarray(self.times) * 1000
        if not len(ms):
            return {}
        return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)} | {
            "max": float(ms.max())
        }

    def summary(self) -> str:
        if not self.times:
            return "no audio was streamed"
        p = self.percentiles()
        budget = 1000 * self.block_seconds
        rtf = self.real_time_factor()
        verdict = "keeps up with" if p["p99"] <= budget else "is slower than"
        return (
            f"{len(self.times)} blocks of {budget:.0f} ms: compute p50 {p['p50']:.1f} "
            f"ms, p90 {p['p90']:.1f} ms, p99 {p['p99']:.1f} ms, max {p['max']:.1f} ms; "
            f"real-time factor {rtf:.2f}; latency about {budget + p['p50']:.0f} ms "
            f"(block + median compute); this machine {verdict} real time at p99"
        )


def _write_stats(
    path: Path, stats: _Stats, codec, force: bool, inputs: list[str]
) -> None:
    from ..files.atomic import atomic_write

    record = {
        "model_id": codec.model_id,
        "block_ms": 1000 * stats.block_seconds,
        "audio_seconds": stats.samples / stats.rate,
        "real_time_factor": stats.real_time_factor(),
        "compute_ms": [1000 * t for t in stats.times],
        **stats.percentiles(),
    }
    with atomic_write(path, force=force, inputs=inputs) as fileobj:
        fileobj.write(json.dumps(record, indent=1).encode())
