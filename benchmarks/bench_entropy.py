"""Entropy-coded .fcz against plain packing, and the token-LM demo (docs/entropy.md).

Three steps (``benchmarks/lm_demo.sh`` runs them in order):

    # 1. tokens of ../shared/audio through a codec, as a token folder
    python benchmarks/bench_entropy.py tokenize --codec CODEC -o runs/lm_demo/tokens
    # 2. (train the LM: focalcodec lm train --config configs/lm/demo.yaml)
    # 3. sizes and bits per token on the held-out test split, silence and tones
    python benchmarks/bench_entropy.py measure --codec CODEC --lm runs/lm_demo/train/export \
        --golden tests/data/golden --json benchmarks/results/entropy.json \
        --curves docs/figures/lm_demo_curves.png --runs runs/lm_demo/train

Every file is compressed with ``focalcodec.pipeline.compress`` exactly as ``focalcodec encode``
does (plain, ``--entropy adaptive``, ``--entropy lm:DIR``), decoded back, and its tokens
compared with the plain file's: every row is lossless or the script fails. Sizes are
whole files (header and CRCs included); bits per token count the token payloads;
``coded_files`` counts the files where coding won (the others are stored plain).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from focalcodec import FocalCodec
from focalcodec.fcz import bitstream
from focalcodec.files.atomic import atomic_write
from focalcodec.files.audio import load_audio
from focalcodec.files.manifest import scan
from focalcodec.identity import header_for
from focalcodec.pipeline.compress import coder_for, encode_tokens, tokens_to_bytes

SR = 16000


def tokenize(args: argparse.Namespace) -> None:
    """Write the token folder of a manifest (ids, splits and metadata kept)."""
    from focalcodec.tokens.dataset import write_tokens

    codec = FocalCodec.from_pretrained(args.codec).eval()

    def items():
        for entry in scan(args.manifest):
            sig, rate = load_audio(entry.path)
            toks, _ = encode_tokens(sig, rate, codec, name=str(entry.path))
            yield {
                "id": entry.id,
                "path": str(entry.path),
                "tokens": toks,
                **entry.meta,
            }

    write_tokens(args.output, items(), codec, force=args.force)


def synthetic() -> dict[str, np.ndarray]:
    """Ten seconds each of silence, a steady tone, and a tone that alternates."""
    t = np.arange(10 * SR) / SR
    return {
        "silence": np.zeros_like(t, dtype=np.float32),
        "tone_200hz": (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
        "tones_220_330hz": (
            0.3 * np.sin(2 * np.pi * np.where(t % 1 < 0.5, 220, 330) * t)
        ).astype(np.float32),
    }


def code(toks: np.ndarray, num_samples: int, header, entropy) -> tuple:
    """Size, payload bytes, encode and decode seconds; fails unless it is lossless."""
    start = time.perf_counter()
    data = tokens_to_bytes(toks, num_samples, header, entropy)
    encoded = time.perf_counter()
    reader = bitstream.Reader(io.BytesIO(data))
    reader.attach(coder_for(reader.header, entropy))
    back = reader.read_all().toks
    decoded = time.perf_counter()
    if not np.array_equal(back, toks):
        raise SystemExit("entropy coding is not lossless: the benchmark is invalid")
    coded = reader.header.version == bitstream.ENTROPY_VERSION
    return (
        len(data),
        reader.stats.payload_bytes,
        encoded - start,
        decoded - encoded,
        coded,
    )


def measure_set(codec, sigs: dict[str, tuple], models: dict) -> dict:
    """Totals over a set of signals for each entropy model."""
    totals = {
        name: {"bytes": 0, "payload_bytes": 0, "encode": 0.0, "decode": 0.0, "coded": 0}
        for name in models
    }
    tokens = audio = 0
    per_item = {}
    for key, (sig, rate) in sigs.items():
        toks, num_samples = encode_tokens(sig, rate, codec)
        header = header_for(codec, rate)
        tokens += len(toks)
        audio += num_samples / codec.sample_rate_input
        row = {}
        for name, model in models.items():
            size, payload, enc, dec, coded = code(toks, num_samples, header, model)
            totals[name]["coded"] += coded
            totals[name]["bytes"] += size
            totals[name]["payload_bytes"] += payload
            totals[name]["encode"] += enc
            totals[name]["decode"] += dec
            row[name] = size
        per_item[key] = row
    out = {"files": len(sigs), "tokens": tokens, "audio_seconds": round(audio, 2)}
    for name, tot in totals.items():
        out[name] = {
            "bytes": tot["bytes"],
            "bits_per_token": 8 * tot["payload_bytes"] / max(tokens, 1),
            "file_bitrate": 8 * tot["bytes"] / max(audio, 1e-9),
            "relative_size": tot["bytes"] / max(totals["plain"]["bytes"], 1),
            "coded_files": tot["coded"],
            "encode_seconds": round(tot["encode"], 3),
            "decode_seconds": round(tot["decode"], 3),
        }
    return out, per_item


def test_split(manifest: str, limit: int | None) -> dict[str, tuple]:
    entries = [e for e in scan(manifest) if e.meta.get("split") == "test"]
    return {e.id: load_audio(e.path) for e in entries[:limit]}


def measure(args: argparse.Namespace) -> None:
    from focalcodec.lm import LMEntropyModel, load_lm
    from focalcodec.lm.evaluate import evaluate_tokens

    torch.set_num_threads(1)
    speech = test_split(args.manifest, args.limit)
    tones = {k: (v, SR) for k, v in synthetic().items()}
    codec = FocalCodec.from_pretrained(args.codec).eval()
    models = {"plain": None, "adaptive": "adaptive"}
    result = {"codec": args.codec, "rows": {}}
    if args.lm:
        models["lm"] = LMEntropyModel(args.lm)
        result.update(lm=args.lm, lm_hash=models["lm"].hash)
    name = Path(args.codec).name
    result["rows"][f"{name}/speech_test"], _ = measure_set(codec, speech, models)
    result["rows"][f"{name}/synthetic"], result["synthetic_bytes"] = measure_set(
        codec, tones, models
    )
    streams = [encode_tokens(s, r, codec)[0] for s, r in speech.values()]
    if args.lm:
        result["lm_eval_test"] = evaluate_tokens(load_lm(args.lm), streams, exact=True)
    if args.tokens:
        result["unigram"] = unigram(args.tokens, streams)
    for case in sorted(Path(args.golden).iterdir()) if args.golden else []:
        if not (case / "config.json").is_file():
            continue
        golden = FocalCodec.from_pretrained(case).eval()
        ad = {"plain": None, "adaptive": "adaptive"}
        subset = dict(list(speech.items())[: args.golden_limit])
        result["rows"][f"golden/{case.name}/speech_test"], _ = measure_set(
            golden, subset, ad
        )
        result["rows"][f"golden/{case.name}/synthetic"], _ = measure_set(
            golden, tones, ad
        )
    result["machine"] = f"{platform.machine()} {platform.processor()}".strip()
    if args.curves and args.runs:
        result["runs"] = plot([Path(r) for r in args.runs], Path(args.curves))
    text = json.dumps(result, indent=2) + "\n"
    with atomic_write(args.json, force=True) as fileobj:
        fileobj.write(text.encode())
    print(text)


def unigram(folder: str, test: list[np.ndarray]) -> dict:
    """Entropy of the train split's token frequencies, and the cross-entropy of the
    test tokens under them (add-1/2 smoothing): what a context-free model could do."""
    from focalcodec.tokens.dataset import TokenDataset

    ds = TokenDataset(folder, split="train")
    size = int(ds.meta["codebook_size"])
    counts = np.zeros(size)
    for i in range(len(ds)):
        counts += np.bincount(ds[i]["tokens"], minlength=size)
    train = counts / counts.sum()
    smooth = (counts + 0.5) / (counts.sum() + 0.5 * size)
    toks = np.concatenate(test)
    return {
        "train_tokens": int(counts.sum()),
        "train_entropy_bits": float(
            -np.sum(train[train > 0] * np.log2(train[train > 0]))
        ),
        "test_cross_entropy_bits": float(-np.mean(np.log2(smooth[toks]))),
    }


def plot(runs: list[Path], path: Path) -> dict:
    """Bits-per-token curves of LM runs (one panel per run and split).

    Returns each run's model config and its validation points.
    """
    import yaml

    from focalcodec.train.logger import read_metrics
    from focalcodec.train.plots import plot_curves

    curves: dict[str, list] = {}
    out = {}
    for run in runs:
        model = yaml.safe_load((run / "config.yaml").read_text())["model"]
        label = "{num_layers}x{dim}, ctx {context}, dropout {dropout}".format(**model)
        for row in read_metrics(run / "metrics.csv"):
            if row["name"] == "bits_per_token":
                curves.setdefault(f"{row['split']} bits/token\n{label}", []).append(
                    (int(row["step"]), float(row["value"]))
                )
        valid = curves.get(f"valid bits/token\n{label}", [])
        out[str(run)] = {"model": model, "valid_bits_per_token": valid}
    plot_curves(curves, path, title="token LM on the demo codec's tokens (CPU)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tokenize")
    p.add_argument("--codec", required=True)
    p.add_argument("--manifest", default="../shared/audio/manifest.jsonl")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("measure")
    p.add_argument("--codec", required=True)
    p.add_argument("--lm", help="token LM folder trained on the codec's tokens")
    p.add_argument("--manifest", default="../shared/audio/manifest.jsonl")
    p.add_argument("--golden", help="folder of golden models (adaptive rows)")
    p.add_argument("--tokens", help="the token folder (unigram statistics)")
    p.add_argument("--limit", type=int, help="test files (default: all)")
    p.add_argument("--golden-limit", type=int, default=40)
    p.add_argument("--json", required=True)
    p.add_argument("--curves", help="PNG of the LM runs' curves")
    p.add_argument("--runs", nargs="*", help="LM run folders (for --curves)")
    args = parser.parse_args()
    {"tokenize": tokenize, "measure": measure}[args.command](args)


if __name__ == "__main__":
    main()
