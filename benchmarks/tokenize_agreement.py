"""How often batched tokenization gives an item's solo tokens, on real speech.

For every file of a manifest or folder, the solo tokens (``codec.sig_to_toks`` on the
item alone, what ``focalcodec tokenize --exact`` writes) are compared with the tokens the
same item gets inside the padded, length-sorted buckets of ``focalcodec tokenize``
(``codec.sig_to_toks_padded``, buckets planned exactly as the tokenizer plans them).
Reported: identical tokens over all tokens, identical items, and the worst item.

Models are full-size with random weights (``FocalCodec.from_config(name)``, seeded) or
any model folder. Example (the figure in ``docs/tokenize.md``)::

    OMP_NUM_THREADS=1 python benchmarks/tokenize_agreement.py ../shared/audio --every 10 \\
        --models focalcodec_50hz focalcodec_12_5hz focalcodec_50hz_2k_causal \\
        --out benchmarks/results/tokenize_agreement.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from focalcodec import FocalCodec  # noqa: E402
from focalcodec.files.audio import load_audio  # noqa: E402
from focalcodec.files.manifest import scan  # noqa: E402
from focalcodec.pipeline.loader import plan_buckets  # noqa: E402


def build(name: str, seed: int) -> FocalCodec:
    torch.manual_seed(seed)
    if Path(name).exists():
        return FocalCodec.from_pretrained(name).eval()
    return FocalCodec.from_config(name).eval()


def agreement(
    codec: FocalCodec, sigs: list[torch.Tensor], batch_seconds: float
) -> dict:
    rate = codec.sample_rate_input
    budget = round(batch_seconds * rate)
    same = total = same_items = 0
    worst = (2.0, -1)
    started = time.perf_counter()
    for bucket in plan_buckets([len(s) for s in sigs], budget):
        longest = max(len(sigs[i]) for i in bucket)
        batch = torch.zeros(len(bucket), longest)
        for row, i in enumerate(bucket):
            batch[row, : len(sigs[i])] = sigs[i]
        lengths = torch.tensor([len(sigs[i]) for i in bucket])
        with torch.inference_mode():
            toks, counts = codec.sig_to_toks_padded(batch, lengths)
            for row, i in enumerate(bucket):
                solo = codec.sig_to_toks(sigs[i][None])[0]
                assert len(solo) == int(counts[row])
                equal = int((solo == toks[row, : len(solo)]).sum())
                same, total = same + equal, total + len(solo)
                same_items += equal == len(solo)
                worst = min(worst, (equal / len(solo), i))
    return {
        "tokens": total,
        "identical_tokens": same,
        "agreement": same / total,
        "items": len(sigs),
        "identical_items": same_items,
        "worst_item": {"index": worst[1], "agreement": worst[0]},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="audio folder or manifest (../shared/audio)")
    parser.add_argument("--models", nargs="+", default=["focalcodec_50hz"])
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--every", type=int, default=1, help="every k-th file only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    source = Path(args.source)
    if source.is_dir() and (source / "manifest.jsonl").is_file():
        source = source / "manifest.jsonl"
    entries = scan(source)[:: args.every]
    sigs = [torch.from_numpy(load_audio(e.path, 16000).sig) for e in entries]
    result = {
        "command": " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "files": len(sigs),
        "audio_seconds": round(sum(len(s) for s in sigs) / 16000, 1),
        "batch_seconds": args.batch_seconds,
        "models": {},
    }
    for name in args.models:
        result["models"][name] = agreement(
            build(name, args.seed), sigs, args.batch_seconds
        )
        print(name, json.dumps(result["models"][name]), flush=True)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
