"""``focalcodec eval``: score one or more codecs on a directory or manifest of speech.

The top-level CLI imports this module only when ``eval`` is the subcommand, and calls
:func:`add_arguments` to build the parser and :func:`run` to execute it. Errors are
:class:`~focalcodec.errors.FocalCodecError` subclasses, which the top-level CLI prints as
one line with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ..eval.asr import ASRMetric
from ..eval.base import Metric, available_metrics, create_metric, load_plugin
from ..eval.conversion import load_conversions, plan_conversions
from ..eval.data import find_utterances
from ..eval.runner import EvalOptions, ModelSpec, evaluate
from .options import (
    add_device,
    add_kernels,
    add_threads,
    apply_threads,
    non_negative_int,
    positive_int,
    torch_device,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    parser.add_argument(
        "data", nargs="?", help="directory of audio files, or a JSONL manifest"
    )
    parser.add_argument(
        "-m",
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]SRC",
        help="model to evaluate (directory, .json, packaged name or Hub id); repeat "
        "to compare several in one table",
    )
    parser.add_argument(
        "-o",
        "--out-dir",
        default="eval_results",
        help="result folder (default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite earlier results"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out-dir"
    )
    _add_selection(parser)
    _add_metric_options(parser)
    _add_vc_options(parser)
    run_group = parser.add_argument_group("execution")
    add_device(run_group)
    add_threads(run_group)
    add_kernels(run_group)
    run_group.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="files scored per metric call",
    )
    run_group.add_argument(
        "--figures",
        type=non_negative_int,
        default=3,
        help="spectrogram figures per model (default 3)",
    )
    run_group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars"
    )


def _add_selection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which files")
    group.add_argument(
        "--split", help="only manifest entries of this split (e.g. test)"
    )
    group.add_argument("--speakers", help="only these speakers (comma-separated)")
    group.add_argument("--limit", type=positive_int, help="at most this many files")


def _add_metric_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics")
    group.add_argument(
        "--metrics",
        help="comma-separated metrics to run (default: all registered; "
        "see --list-metrics)",
    )
    group.add_argument("--skip-metrics", help="comma-separated metrics not to run")
    group.add_argument(
        "--list-metrics", action="store_true", help="print the metric names and exit"
    )
    group.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE[:FACTORY]",
        help="import a module that registers extra metrics (repeatable)",
    )
    group.add_argument(
        "--asr-model",
        help="faster-whisper model: local CTranslate2 directory or Hub id "
        "(default: $FOCALCODEC_ASR_MODEL)",
    )
    group.add_argument("--asr-language", help="language code for ASR (default: detect)")
    group.add_argument(
        "--asr-compute-type", default="default", help="CTranslate2 compute type"
    )


def _add_vc_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("voice conversion")
    group.add_argument(
        "--vc",
        action="store_true",
        help="also evaluate voice conversion, pairing speakers from their labels",
    )
    group.add_argument(
        "--vc-plan", help="JSONL file of explicit conversions (implies --vc)"
    )
    group.add_argument(
        "--vc-refs",
        type=positive_int,
        default=3,
        help="reference files per target speaker",
    )
    group.add_argument(
        "--vc-limit", type=positive_int, help="at most this many conversions"
    )
    group.add_argument("--vc-only", action="store_true", help="skip reconstruction")
    group.add_argument(
        "--topk", type=positive_int, default=4, help="kNN neighbours (default 4)"
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``focalcodec eval``; returns the exit status (0 on success)."""
    for spec in args.plugin:
        load_plugin(spec)
    if args.list_metrics:
        print("\n".join(available_metrics()))
        return 0
    if not args.data:
        raise UsageError("give a directory or manifest to evaluate (DATA)")
    if not args.model:
        raise UsageError("give at least one --model to evaluate")
    if args.force and args.resume:
        raise UsageError("--force starts over and --resume continues: give one")
    apply_threads(args)
    speakers = _split_list(args.speakers)
    utterances = find_utterances(
        args.data, split=args.split, speakers=speakers, limit=args.limit
    )
    options = EvalOptions(
        out_dir=Path(args.out_dir),
        metrics=_metrics(args),
        batch_size=args.batch_size,
        num_figures=args.figures,
        device=_device(args.device),
        force=args.force,
        resume=args.resume,
        reconstruct=not args.vc_only,
        conversions=_conversions(args, utterances),
        topk=args.topk,
        progress=not args.quiet,
    )
    report = evaluate([_model_spec(m) for m in args.model], utterances, options)
    print((options.out_dir / "summary.md").read_text(encoding="utf-8"))
    print(f"results written to {options.out_dir}/", file=sys.stderr)
    return 1 if report["failed"] else 0


def _metrics(args: argparse.Namespace) -> list[str | Metric]:
    names = _split_list(args.metrics) or available_metrics()
    skip = set(_split_list(args.skip_metrics) or ())
    known = set(available_metrics())
    for name in [*names, *skip]:
        if name not in known:
            raise UsageError(
                f"unknown metric {name!r}; known: {', '.join(sorted(known))}"
            )
    chosen: list[str | Metric] = []
    for name in names:
        if name in skip:
            continue
        if name == "asr":
            chosen.append(
                ASRMetric(
                    model=args.asr_model,
                    device=_device(args.device),
                    compute_type=args.asr_compute_type,
                    language=args.asr_language,
                )
            )
        else:
            chosen.append(create_metric(name))
    return chosen


def _conversions(args: argparse.Namespace, utterances: list) -> list:
    if args.vc_plan:
        plan = load_conversions(args.vc_plan)
        return plan[: args.vc_limit] if args.vc_limit is not None else plan
    if args.vc or args.vc_only:
        return plan_conversions(utterances, num_refs=args.vc_refs, limit=args.vc_limit)
    return []


def _model_spec(text: str) -> ModelSpec:
    label, sep, source = text.partition("=")
    if sep and label and source:
        return ModelSpec(label, source)
    # No label: name the model after the last part of its path or id.
    return ModelSpec(Path(text.rstrip("/")).name or text, text)


def _device(name: str) -> str:
    return str(torch_device(name))


def _split_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]
