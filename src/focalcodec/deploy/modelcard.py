"""Model cards: what a model is, in numbers (``focalcodec models --details NAME``).

A card is built from the architecture alone. A name, path or Hub id is resolved to its
config, and the model is instantiated on PyTorch's ``meta`` device, which allocates no
memory and loads no weights. So a card costs no download for the packaged models.
Parameter counts are state_dict sizes (parameters plus persistent buffers), the same
convention as :meth:`FocalCodec.info`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import SLOTS
from ..pretrained import skeleton, source_of

__all__ = ["card", "render"]

LICENCE = "Apache-2.0 (focalcodec code); for the weights, see the source's own terms"


def card(model: Any) -> dict[str, Any]:
    """The model card of ``model`` as a dict.

    Parameters
    ----------
    model
        A :class:`~focalcodec.FocalCodec`, an exported
        :class:`~focalcodec.deploy.onnx_runtime.OnnxCodec`, or anything
        :meth:`FocalCodec.from_config` accepts (packaged name, local directory or
        ``.json``, Hub id).

    Returns
    -------
    Keys: name, source, licence, components (slot -> class name), params (slot -> count,
    plus "total"), and the rate fields of :meth:`FocalCodec.info` (sample rates, causal,
    chunk_size, latency in ms, token_rate, bits_per_token, codebook_size, bitrate in
    bit/s) and config_hash.
    """
    from .onnx_runtime import OnnxCodec

    if isinstance(model, (str, Path)):
        name = str(model)
        codec = _skeleton(name)
    elif isinstance(model, OnnxCodec):
        return _onnx_card(model)
    else:
        codec = model
        name = codec.model_id or "(unnamed model)"
    config = codec.config
    state = codec.state_dict()
    params = {
        slot: sum(v.numel() for k, v in state.items() if k.startswith(f"{slot}."))
        for slot in SLOTS
    }
    params["total"] = sum(v.numel() for v in state.values())
    return {
        "name": name,
        "source": source_of(name),
        "licence": LICENCE,
        "components": {slot: config[f"{slot}_name"] for slot in SLOTS},
        "params": params,
        **_rates(codec),
        "config_hash": codec.config_hash(),
    }


def render(model: Any) -> str:
    """The model card of ``model`` as aligned text lines (see :func:`card`)."""
    info = card(model)
    latency = info["latency"]
    chunk = info["chunk_size"]
    chunk_ms = 1000 * chunk / info["sample_rate_input"]
    rows = [
        ("model", info["name"]),
        ("source", info["source"]),
        ("licence", info["licence"]),
        (
            "sample rate",
            f"{info['sample_rate_input']} Hz in, {info['sample_rate_output']} Hz out",
        ),
        (
            "streaming",
            "causal (streams chunk by chunk)"
            if info["causal"]
            else "non-causal (offline only)",
        ),
        ("chunk size", f"{chunk} samples ({chunk_ms:g} ms)"),
        ("latency", f"{latency:g} ms (algorithmic)" if latency is not None else "n/a"),
        ("token rate", f"{info['token_rate']:g} tokens/s"),
        (
            "codebook",
            f"{info['codebook_size']} codes ({info['bits_per_token']} bits "
            "per token, one stream)",
        ),
        ("bitrate", f"{info['bitrate']:g} bit/s ({info['bitrate'] / 1000:.3g} kbps)"),
        ("config hash", info["config_hash"]),
    ]
    params = info["params"]
    rows.append(("parameters", f"{params['total']:,} ({params['total'] / 1e6:.1f} M)"))
    for slot in SLOTS:
        if slot in params:
            label = f"  {slot} ({info['components'][slot]})"
            rows.append((label, f"{params[slot]:,}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _skeleton(name: str):
    """The architecture of ``name`` on the meta device (no weights, no memory)."""
    from ..codec import FocalCodec

    codec = skeleton(FocalCodec, name)
    codec.model_id = name
    return codec


def _rates(codec: Any) -> dict[str, Any]:
    return {
        "sample_rate_input": int(codec.sample_rate_input),
        "sample_rate_output": int(codec.sample_rate_output),
        "causal": bool(codec.causal),
        "chunk_size": int(codec.chunk_size),
        "latency": codec.latency,
        "token_rate": float(codec.token_rate),
        "bits_per_token": int(codec.bits_per_token),
        "codebook_size": int(codec.codebook_size),
        "bitrate": float(codec.token_rate * codec.bits_per_token),
    }


def _onnx_card(onnx_codec: Any) -> dict[str, Any]:
    """Card of an ONNX export, from its manifest."""
    manifest = onnx_codec.manifest
    model_id = manifest.get("model_id")
    config = manifest["config"]
    params = dict(manifest.get("params_per_component", {}))
    params["total"] = manifest["num_total_params"]
    source = f"ONNX export at {Path(onnx_codec.directory).resolve()}"
    return {
        "name": model_id or str(onnx_codec.directory),
        "source": source + (f" of {source_of(model_id)}" if model_id else ""),
        "licence": LICENCE,
        "components": {slot: config[f"{slot}_name"] for slot in SLOTS},
        "params": params,
        **_rates(onnx_codec),
        "config_hash": manifest["config_hash"],
    }
