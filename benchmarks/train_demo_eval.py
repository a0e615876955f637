"""Before/after numbers and figures of the CPU training demonstration.

Reads the two runs made by ``benchmarks/train_demo.sh`` and compares, on the test split
of ``../shared/audio``, the randomly initialised modules each run started from (rebuilt
from the run's config and seed) with its export:

* quantizer stage: feature reconstruction (MSE per element and cosine similarity between
  the frozen encoder's features and the decompressor output);
* decoder stage: log-mel L1 distance and STOI of the decoder output from the frozen
  features against the input audio;
* both together: the complete codec (trained compressor/decompressor + trained decoder)
  resynthesising each file, against the same codec before training.

Writes a JSON file with every number and two PNG figures (loss curves; spectrograms of
one test utterance). Needs matplotlib and pystoi.

    python benchmarks/train_demo_eval.py --runs runs/demo --figures docs/figures \
        --json benchmarks/results/train_demo.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from focalcodec import FocalCodec
from focalcodec.files.atomic import atomic_write
from focalcodec.files.manifest import read_manifest
from focalcodec.train.cache import module_fingerprint
from focalcodec.train.config import config_from_dict
from focalcodec.train.data import load_audio
from focalcodec.train.logger import read_metrics
from focalcodec.train.losses import MelSpectrogram
from focalcodec.train.plots import plot_curves, plot_spectrograms
from focalcodec.train.runner import build_stage


def initial_codec(run_dir: Path) -> FocalCodec:
    """The codec a run started from: same config, same seed, no training."""
    import yaml

    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    return build_stage(config_from_dict(data), torch.device("cpu")).codec


def combine(quantizer: FocalCodec, decoder: FocalCodec) -> FocalCodec:
    """Compressor/decompressor from one codec and the decoder from the other."""
    both = FocalCodec(**quantizer.config)
    both.load_state_dict(quantizer.state_dict())
    both.decoder.load_state_dict(decoder.decoder.state_dict())
    return both.eval()


def stoi(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    from pystoi import stoi as pystoi_stoi

    return float(pystoi_stoi(ref, deg, rate, extended=False))


@torch.no_grad()
def evaluate(models: dict[str, FocalCodec], files: list[Path], max_seconds: float):
    """Per-model mean metrics over the test files."""
    # Outputs are compared sample by sample with the input: the demo codec's output
    # rate is its input rate (the models' own properties say so, or this stops).
    rate = models["codec_after"].sample_rate_input
    if any(m.sample_rate_output != rate for m in models.values()):
        raise SystemExit("the demo models must output audio at their input rate")
    melspec = MelSpectrogram(rate, 1024, 256, 80)
    sums: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        sums.setdefault(key, []).append(value)

    for path in files:
        (sig,) = load_audio(path, [rate])
        sig = sig[: int(max_seconds * rate)][None]
        feats = models["quantizer_before"].sig_to_feats(sig)
        for tag in ("before", "after"):
            qfeats = models[f"quantizer_{tag}"].feats_to_qfeats(feats)[
                :, : feats.shape[1]
            ]
            add(f"quantizer_{tag}/feature_mse", float((qfeats - feats).pow(2).mean()))
            cos = torch.nn.functional.cosine_similarity(qfeats, feats, dim=-1).mean()
            add(f"quantizer_{tag}/feature_cosine", float(cos))
            for name, out in (
                (f"decoder_{tag}", models[f"decoder_{tag}"].feats_to_sig(feats)),
                (f"codec_{tag}", models[f"codec_{tag}"].sig_to_sig(sig)),
            ):
                out = out[:, : sig.shape[1]]
                ref = sig[:, : out.shape[1]]
                add(f"{name}/mel_l1", float((melspec(out) - melspec(ref)).abs().mean()))
                add(f"{name}/stoi", stoi(ref[0].numpy(), out[0].numpy(), rate))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def curves(runs: Path, out: Path) -> None:
    panels = {}
    for stage, names in (
        ("quantizer", [("train", "feature_loss"), ("valid", "feature_mse")]),
        (
            "decoder",
            [("train", "mel_loss"), ("valid", "mel_loss"), ("train", "disc_loss")],
        ),
    ):
        rows = read_metrics(runs / stage / "metrics.csv")
        for split, name in names:
            points = [
                (int(r["step"]), float(r["value"]))
                for r in rows
                if r["split"] == split and r["name"] == name
            ]
            panels[f"{stage} {split}\n{name}"] = points
    plot_curves(panels, out, title="CPU demo: training curves")


@torch.no_grad()
def spectrograms(models: dict[str, FocalCodec], path: Path, out: Path) -> None:
    rate = models["decoder_before"].sample_rate_input
    (sig,) = load_audio(path, [rate])
    sig = sig[: rate * 4][None]
    feats = models["decoder_before"].sig_to_feats(sig)
    panels = [("input (test split)", sig[0], rate)]
    for key, label in (
        ("decoder_before", "decoder before training (random init)"),
        ("decoder_after", "decoder after training (from frozen features)"),
        ("codec_after", "full codec after training (500 bps tokens)"),
    ):
        if key.startswith("decoder"):
            wav = models[key].feats_to_sig(feats)[0]
        else:
            wav = models[key].sig_to_sig(sig)[0]
        panels.append((label, wav.clamp(-1, 1), models[key].sample_rate_output))
    plot_spectrograms(panels, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/train_demo.json")
    )
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--every", type=int, default=4, help="use every k-th test file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    q_before = initial_codec(args.runs / "quantizer").eval()
    d_before = initial_codec(args.runs / "decoder").eval()
    q_after = FocalCodec.from_pretrained(args.runs / "quantizer" / "export").eval()
    d_after = FocalCodec.from_pretrained(args.runs / "decoder" / "export").eval()
    keys = {
        module_fingerprint(m.encoder) for m in (q_before, d_before, q_after, d_after)
    }
    if len(keys) != 1:
        raise SystemExit("the two runs do not share one frozen encoder")
    models = {
        "quantizer_before": q_before,
        "quantizer_after": q_after,
        "decoder_before": d_before,
        "decoder_after": d_after,
        "codec_before": combine(q_before, d_before),
        "codec_after": combine(q_after, d_after),
    }
    entries = [
        e
        for e in read_manifest(args.shared / "audio" / "manifest.jsonl")
        if e.split == "test"
    ]
    files = [e.path for e in entries][:: args.every]
    results = evaluate(models, files, args.max_seconds)
    steps = {
        stage: json.loads(
            max(
                (args.runs / stage / "checkpoints").glob("step_*/meta.json")
            ).read_text()
        )["step"]
        for stage in ("quantizer", "decoder")
    }
    report = {
        "test_files": len(files),
        "test_selection": f"every {args.every}th file of split=test, sorted by path",
        "max_seconds_per_file": args.max_seconds,
        "steps": steps,
        "metrics": results,
        "eval_seconds": round(time.time() - start, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.json, force=True) as fileobj:
        fileobj.write((json.dumps(report, indent=2) + "\n").encode())
    args.figures.mkdir(parents=True, exist_ok=True)
    curves(args.runs, args.figures / "train_demo_curves.png")
    spectrograms(models, files[0], args.figures / "train_demo_spectrograms.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
