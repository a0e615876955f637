"""``focalcodec lm``: train, evaluate and sample a token language model.

focalcodec lm train --config configs/lm/demo.yaml data.source=tokens/
focalcodec lm eval tokens/ --lm runs/lm/export --split test
focalcodec lm continue prompt.wav -o out.wav --lm DIR --model M --seconds 3
focalcodec lm generate -o out.wav --lm DIR --model M --seconds 3
torchrun --nproc-per-node 4 -m focalcodec lm train --config ...
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from ..errors import UsageError
from .options import add_common, positive_int, torch_device
from .report import print_json

__all__ = ["add_arguments", "run"]

_HELP = {
    "train": "train a token LM on a token folder (resumable; torchrun for DDP)",
    "eval": "bits per token of a token LM on a token folder",
    "continue": "continue a spoken prompt with a token LM",
    "generate": "generate speech from nothing with a token LM",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lm_command", metavar="COMMAND", required=True)
    p = sub.add_parser("train", help=_HELP["train"], description=_HELP["train"])
    p.add_argument("--config", "-c", help="YAML recipe (see configs/lm/)")
    p.add_argument("--run-dir", help="output folder (overrides run_dir)")
    p.add_argument(
        "--resume", action="store_true", help="continue the newest checkpoint"
    )
    p.add_argument(
        "--force", action="store_true", help="start over in a used run folder"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.source=tokens/"
    )
    p = sub.add_parser("eval", help=_HELP["eval"], description=_HELP["eval"])
    p.add_argument("tokens", help="token folder (focalcodec tokenize -o DIR)")
    _add_lm(p)
    p.add_argument("--split", help="only items of this split (e.g. test)")
    p.add_argument("--max-items", type=positive_int, help="score at most N items")
    p.add_argument(
        "--exact", action="store_true", help="also score the entropy coder's exact LM"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: auto)")
    for name in ("continue", "generate"):
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        if name == "continue":
            p.add_argument("prompt", help="audio file to continue")
        p.add_argument("-o", "--output", required=True, help="output audio file")
        _add_lm(p)
        p.add_argument("-m", "--model", required=True, help="the codec of the LM")
        p.add_argument(
            "--seconds", type=float, required=True, help="seconds of new audio"
        )
        _add_sampling(p)
        add_common(p, batch=False)


def _add_lm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lm", required=True, metavar="DIR", help="LM folder (lm train's export/)"
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=1.0, help="default: 1.0")
    g.add_argument("--top-k", type=int, default=0, help="default: 0 (all tokens)")
    g.add_argument("--top-p", type=float, default=1.0, help="default: 1.0 (all)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    try:
        return {
            "train": _train,
            "eval": _eval,
            "continue": _sample,
            "generate": _sample,
        }[args.lm_command](args)
    except ImportError as exc:
        raise UsageError(
            f"focalcodec lm {args.lm_command} needs {exc.name or exc}: "
            "pip install 'focalcodec[lm]'"
        ) from None


def _train(args: argparse.Namespace) -> int:
    from ..lm.train import load_lm_config
    from ..lm.train import run as run_training

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    cfg = load_lm_config(args.config, overrides)
    metrics = run_training(cfg, resume=args.resume, force=args.force)
    if metrics:
        print(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..lm.data import open_tokens, token_info
    from ..lm.evaluate import evaluate_tokens
    from ..lm.files import load_lm

    lm = load_lm(args.lm, torch_device(args.device))
    ds = open_tokens(args.tokens)
    info = token_info(ds)
    if info["codebook_size"] != lm.cfg.codebook_size:
        raise UsageError(
            f"{args.tokens} holds {info['codebook_size']}-token codes, the LM models "
            f"{lm.cfg.codebook_size}"
        )
    picked = [i for i, r in enumerate(ds.items) if args.split in (None, r.get("split"))]
    picked = picked[: args.max_items]
    result = evaluate_tokens(lm, (ds[i]["tokens"] for i in picked), exact=args.exact)
    result = {"lm": args.lm, "lm_hash": lm.lm_hash, "tokens_dir": args.tokens, **result}
    if args.json:
        print_json(result)
    else:
        exact = result.get("exact_bits_per_token")
        print(
            f"{result['items']} items, {result['tokens']} tokens: "
            f"{result['bits_per_token']:.3f} bits/token "
            f"({result['nominal_bits_per_token']:g} nominal), "
            f"{result['bits_per_second']:.1f} bits/s"
            + (f"; exact coder model {exact:.3f} bits/token" if exact else "")
        )
    return 0


def _sample(args: argparse.Namespace) -> int:
    from ..files.atomic import atomic_write, check_output
    from ..files.audio import audio_format, load_audio, write_audio
    from ..lm.files import load_lm
    from ..lm.sampling import SamplingConfig, continue_audio, generate_audio
    from ..pipeline.models import load_codec

    out = Path(args.output)
    try:
        fmt = audio_format(out)
    except Exception as exc:
        raise UsageError(str(exc)) from None
    inputs = (Path(args.prompt),) if args.lm_command == "continue" else ()
    check_output(out, force=args.force, inputs=inputs)
    device = torch_device(args.device)
    cfg = SamplingConfig(args.temperature, args.top_k, args.top_p, args.seed)
    codec = load_codec(args.model, device)
    lm = load_lm(args.lm, device)
    if args.lm_command == "continue":
        sig, rate = load_audio(args.prompt)
        wav, out_rate = continue_audio(codec, lm, sig, rate, args.seconds, cfg)
    else:
        wav, out_rate = generate_audio(codec, lm, args.seconds, cfg)
    buf = io.BytesIO()
    write_audio(buf, wav.numpy(), out_rate, format=fmt)
    with atomic_write(out, force=args.force, inputs=inputs) as fileobj:
        fileobj.write(buf.getvalue())
    if not args.quiet:
        print(f"wrote {out} ({len(wav) / out_rate:.2f} s at {out_rate} Hz)")
    return 0
