"""ONNX export: offline graphs for any model, chunk-step graphs for causal models.

A directory written by :func:`export_onnx` holds::

    encoder.onnx          sig (batch, time) float32            -> toks (batch, latent_time)
    decoder.onnx          toks (batch, latent_time) int64      -> sig (batch, out_time)
    stream_encoder.onnx   sig (batch, chunk_size), first, state_in.*  -> toks, state_out.*
    stream_decoder.onnx   toks (batch, chunk_tokens), first, state_in.* -> sig, state_out.*
    manifest.json         what the graphs expect (see ``docs/deployment.md``)

The two ``stream_*`` graphs exist only for causal models. Their state tensors are the
tensors of :meth:`focalcodec.streaming.steps.StreamState.flatten`, with the same names and
layout, so a stream can move between PyTorch and ONNX Runtime at any chunk.

Start of a stream. PyTorch invents the missing past (edge replication or zeros) when the
state is None, but a graph has no None inputs. The step graphs therefore take a boolean
``first``: pass zero-filled state tensors and ``first=True`` for the first chunk, then
the returned state with ``first=False``.

Exporter. These graphs are traced with the TorchScript-based ``torch.onnx.export``
(``dynamo=False``). With torch 2.13 the torch.export-based exporter took 30-70 s per
graph for the 2-layer test models, failed in its type-promotion pass on the attention
reshape unless SDPA was forced to the math kernel, and refused dynamic lengths that
could be 1 frame. Tracing takes about a second and keeps shape arithmetic dynamic. What
is traced is the core's own code, in a copy of the model where a few modules are swapped
(:mod:`focalcodec.deploy.onnx_graphs`: plain convolutions, the ``first`` selection, a
cache written at a tensor row); the shape branches that tracing would still freeze are
steered by the dummy inputs (:func:`_dummy_length`, :func:`min_samples`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..config import SLOTS
from ..errors import InputError
from ..files.atomic import atomic_write, check_output
from ..identity import weights_hash
from .onnx_graphs import (
    OfflineDecoder,
    OfflineEncoder,
    StreamDecoderStep,
    StreamEncoderStep,
    stream_template,
)

__all__ = ["MANIFEST_NAME", "export_onnx", "min_samples"]

OPSET = 17
FORMAT_NAME = "focalcodec-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


# ---------------------------------------------------------------------------------------
# Shapes that tracing freezes
# ---------------------------------------------------------------------------------------


def _frames(wavlm: nn.Module, samples: int) -> tuple[int, bool]:
    """Encoder frames for ``samples`` and whether no conv input was shorter than its kernel."""
    length, whole = samples, True
    for block in wavlm.feature_extractor.layers:
        kernel, stride = block.conv.kernel_size[0], block.conv.stride[0]
        if wavlm.causal:
            length = (length - 1) // stride + 1
            continue
        whole = whole and length >= kernel
        length = (max(length, kernel) - kernel) // stride + 1
    return length, whole


def min_samples(codec: nn.Module) -> int:
    """Shortest input the offline encoder graph handles exactly.

    Tracing records the usual branch of the non-causal CNN front-end (no conv input
    shorter than its kernel: 400 samples for WavLM); the core pads shorter inputs.
    """
    samples = codec.min_samples
    while not _frames(codec.encoder, samples)[1]:
        samples += 1
    return samples


def _dummy_length(codec: nn.Module, seconds: float = 2.0) -> int:
    """Input length for tracing the offline encoder.

    The non-causal DownScale pads ``(T - f) % f`` frames only ``if`` that is non-zero;
    tracing keeps whichever branch the dummy input takes, while the pad amount itself
    stays dynamic. Choose a length for which every DownScale pads, so the graph keeps the
    pad (of 0 when nothing is missing).
    """
    factors = [layer.downscale.factor for layer in codec.compressor.layers]
    hop = codec.encoder.downsample_factor
    samples = max(int(seconds * codec.sample_rate_input), 4 * codec.chunk_size)
    for extra in range(0, 64 * math.prod(factors) * hop, hop):
        frames = _frames(codec.encoder, samples + extra)[0]
        if _pads_everywhere(frames, factors):
            return samples + extra
    raise InputError(f"no tracing length found for the downscale factors {factors}")


def _pads_everywhere(frames: int, factors: list[int]) -> bool:
    for factor in factors:
        if factor > 1 and frames % factor == 0:
            return False
        frames = -(-frames // factor)
    return True


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------


def export_onnx(
    codec: nn.Module,
    directory: str | os.PathLike,
    *,
    force: bool = False,
    streaming: bool | None = None,
    opset: int = OPSET,
) -> dict[str, Any]:
    """Write the ONNX graphs of ``codec`` and ``manifest.json`` into ``directory``.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec` on the CPU; it is put in eval mode.
    directory
        Output folder, created if missing.
    force
        Replace graphs and manifest that already exist there.
    streaming
        Also export the chunk-step graphs; default: when the model is causal.
    opset
        ONNX opset version.

    Returns
    -------
    The manifest, also written to ``directory / "manifest.json"``.
    """
    codec.eval()
    streaming = codec.causal if streaming is None else streaming
    if streaming and not codec.causal:
        raise InputError(
            f"model {codec.model_id or '(unnamed)'} is not causal: only causal models "
            "have streaming graphs"
        )
    directory = Path(directory)
    names = ["encoder", "decoder"] + (["stream_encoder", "stream_decoder"] * streaming)
    for path in [directory / MANIFEST_NAME] + [directory / f"{n}.onnx" for n in names]:
        check_output(path, force=force)
    manifest = _describe(codec, opset)
    # Tracing needs ordinary tensors, also when the caller is in inference mode.
    with torch.inference_mode(False), torch.no_grad():
        jobs = _offline_jobs(codec) + (_stream_jobs(codec) if streaming else [])
        for file, module, args, spec in jobs:
            _trace(module, args, directory / file, spec, opset, force)
            name = file.removesuffix(".onnx")
            manifest["graphs"][name] = {"file": file, **_finish(spec, directory / file)}
    with atomic_write(directory / MANIFEST_NAME, force=force) as fh:
        fh.write((json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _describe(codec: nn.Module, opset: int) -> dict[str, Any]:
    state = codec.state_dict()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "focalcodec_version": __version__,
        "torch_version": torch.__version__,
        "exporter": "torch.onnx.export (TorchScript tracer, dynamo=False)",
        "opset": opset,
        "model_id": codec.model_id,
        "config_hash": codec.config_hash(),
        # The exported weights' digest, so token folders made through ONNX Runtime are
        # tied to these weights as the PyTorch model's are (focalcodec.identity).
        "weights_hash": weights_hash(codec),
        "config": codec.config,
        "sample_rate_input": codec.sample_rate_input,
        "sample_rate_output": codec.sample_rate_output,
        "causal": codec.causal,
        "chunk_size": codec.chunk_size,
        "latency": codec.latency,
        "token_rate": codec.token_rate,
        "codebook_size": codec.codebook_size,
        "bits_per_token": codec.bits_per_token,
        "encoder_hop": codec.encoder.downsample_factor,
        "compressor_factor": codec.compressor.downsample_factor,
        "samples_per_token": codec.hop_length,
        "output_samples_per_token": codec.output_hop_length,
        "min_samples": min_samples(codec),
        "num_total_params": sum(v.numel() for v in state.values()),
        "params_per_component": {
            slot: sum(v.numel() for k, v in state.items() if k.startswith(f"{slot}."))
            for slot in SLOTS
        },
        "graphs": {},
    }


def _io(name: str, shape: list, dtype: str) -> dict[str, Any]:
    """A manifest entry; string dimensions are dynamic axes of that name."""
    return {"name": name, "shape": shape, "dtype": dtype}


def _offline_jobs(codec: nn.Module) -> list[tuple]:
    sig = torch.randn(2, _dummy_length(codec)) * 0.1
    toks = torch.randint(0, codec.codebook_size, (2, 50))
    sig_io = _io("sig", ["batch", "time"], "float32")
    toks_io = _io("toks", ["batch", "latent_time"], "int64")
    out_io = _io("sig", ["batch", "out_time"], "float32")
    return [
        (
            "encoder.onnx",
            OfflineEncoder(codec),
            (sig,),
            {"inputs": [sig_io], "outputs": [toks_io]},
        ),
        (
            "decoder.onnx",
            OfflineDecoder(codec),
            (toks,),
            {"inputs": [toks_io], "outputs": [out_io]},
        ),
    ]


def _stream_jobs(codec: nn.Module) -> list[tuple]:
    template = stream_template(codec)
    flat = template.flatten()
    tokens = codec.chunk_tokens
    samples_out = tokens * codec.output_hop_length
    sig_io = _io("sig", ["batch", codec.chunk_size], "float32")
    toks_io = _io("toks", ["batch", tokens], "int64")
    out_io = _io("sig", ["batch", samples_out], "float32")
    jobs = []
    for file, step, x_io, y_io in [
        ("stream_encoder.onnx", StreamEncoderStep(codec, template), sig_io, toks_io),
        ("stream_decoder.onnx", StreamDecoderStep(codec, template), toks_io, out_io),
    ]:
        state = [_state_entry(name, flat[name]) for name in step.names]
        spec = {
            "inputs": [x_io, _io("first", [], "bool")],
            "outputs": [y_io],
            "state": state,
        }
        # Batch 2 so that no traced reshape can take the batch axis for a constant 1.
        x = torch.randn(2, x_io["shape"][1]) * 0.1
        if x_io["dtype"] == "int64":
            x = torch.randint(0, codec.codebook_size, (2, x_io["shape"][1]))
        zeros = [_zeros(entry, 2) for entry in state]
        jobs.append((file, step, (x, torch.tensor(True), *zeros), spec))
    return jobs


def _state_entry(name: str, tensor: Tensor) -> dict[str, Any]:
    return {
        "name": name,
        "input": f"state_in.{name}",
        "output": f"state_out.{name}",
        "shape": ["batch", *tensor.shape[1:]] if tensor.dim() else [],
        "dtype": str(tensor.dtype).removeprefix("torch."),
    }


def _zeros(entry: dict[str, Any], batch: int) -> Tensor:
    shape = [batch if dim == "batch" else dim for dim in entry["shape"]]
    return torch.zeros(shape, dtype=getattr(torch, entry["dtype"]))


def _trace(
    module: nn.Module, args: tuple, path: Path, spec: dict, opset, force
) -> None:
    state = spec.get("state", [])
    inputs = spec["inputs"] + [_io(e["input"], e["shape"], e["dtype"]) for e in state]
    outputs = spec["outputs"] + [
        _io(e["output"], e["shape"], e["dtype"]) for e in state
    ]
    axes = {
        entry["name"]: {
            i: dim for i, dim in enumerate(entry["shape"]) if isinstance(dim, str)
        }
        for entry in inputs + outputs
    }
    module.eval()
    with atomic_write(path, force=force) as fh, warnings.catch_warnings():
        # Tracer warnings name the branches frozen on purpose (see the module docstring);
        # the legacy-exporter notice and constant-folding notes are not actionable.
        for category in (torch.jit.TracerWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        torch.onnx.export(
            module,
            args,
            fh,
            dynamo=False,
            input_names=[entry["name"] for entry in inputs],
            output_names=[entry["name"] for entry in outputs],
            dynamic_axes={name: dims for name, dims in axes.items() if dims},
            opset_version=opset,
            do_constant_folding=True,
        )


def _finish(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """The manifest entry of a written graph.

    The exporter drops inputs that a graph never reads (the 1-frame placeholders of
    factor-1 Down/UpScales); their state entries get ``"input": null``.
    """
    import onnx

    read = {value.name for value in onnx.load(str(path)).graph.input}
    for entry in spec.get("state", []):
        if entry["input"] not in read:
            entry["input"] = None
    return spec
