"""``focalcodec train``: run a training recipe or export a checkpoint.

    focalcodec train quantizer --config configs/quantizer_50hz.yaml optim.lr=1e-4
    focalcodec train decoder --config configs/decoder_vocos_50hz.yaml --resume
    torchrun --nproc_per_node 4 -m focalcodec.train decoder --config ...
    focalcodec train export runs/quantizer_50hz my_codec/

The top-level CLI calls :func:`add_arguments` on its ``train`` sub-parser and
:func:`run` with the parsed arguments; ``python -m focalcodec.train`` does the same
without it (the form ``torchrun -m`` needs).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import FocalCodecError
from ..train.config import STAGES

__all__ = ["add_arguments", "main", "run"]

_HELP = {
    "quantizer": "train compressor + BSQ + decompressor on frozen encoder features",
    "decoder": "train the Vocos/WaveNeXt decoder adversarially on frozen features",
    "causal-encoder": "distil a causal encoder from a non-causal one (FocalCodec-Stream)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="train_command", metavar="STAGE", required=True)
    for stage in STAGES:
        p = sub.add_parser(stage, help=_HELP[stage], description=_HELP[stage])
        p.add_argument("--config", "-c", help="YAML recipe (see configs/)")
        p.add_argument("--run-dir", help="output folder (overrides run_dir)")
        p.add_argument(
            "--resume", action="store_true", help="continue from the newest checkpoint"
        )
        p.add_argument(
            "--force",
            action="store_true",
            help="start over in a run folder that already holds a run",
        )
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config overrides with dot paths, e.g. optim.lr=1e-4",
        )
    p = sub.add_parser(
        "export",
        help="write a checkpoint as a from_pretrained folder",
        description="Rebuild the codec of a checkpoint and save it with save_pretrained.",
    )
    p.add_argument("checkpoint", help="checkpoint folder, or run folder (newest one)")
    p.add_argument("output", help="export folder (config.json + model.safetensors)")
    p.add_argument("--force", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    """Execute parsed ``train`` arguments; returns the process exit status."""
    try:
        if args.train_command == "export":
            from ..train.export import export_checkpoint

            used = export_checkpoint(args.checkpoint, args.output, force=args.force)
            print(f"exported {used} -> {args.output}")
            return 0
        return _train(args)
    except FocalCodecError as exc:
        print(f"focalcodec train: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"focalcodec train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "focalcodec train: interrupted; continue with --resume from the last "
            "checkpoint",
            file=sys.stderr,
        )
        return 130


def _train(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.runner import run as run_stage

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    cfg = load_config(args.config, overrides, stage=args.train_command)
    metrics = run_stage(cfg, resume=args.resume, force=args.force)
    if metrics:
        print(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m focalcodec.train``)."""
    parser = argparse.ArgumentParser(prog="focalcodec train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
