"""``focalcodec probe``: train small downstream probes on frozen tokens and compare codecs.

``probe classify`` (BiLSTM + mean/std pooling + linear; error rate), ``probe asr``
(BiLSTM + CTC over characters or BPE; CER and WER) and ``probe prepare`` (manifests of
LibriSpeech, IEMOCAP, Speech Commands and SLURP from their standard folder layouts).
See docs/probes.md.
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError, UsageError
from .options import add_common, positive_int
from .report import write_line

__all__ = ["add_arguments", "run"]

_HELP = {
    "classify": "classification probe on a manifest field (speaker, language, ...)",
    "asr": "CTC speech-recognition probe on a transcript field",
    "prepare": "write a probe manifest for a public data set",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="probe_command", metavar="TASK", required=True)
    for task in ("classify", "asr"):
        p = sub.add_parser(task, help=_HELP[task], description=_HELP[task])
        _add_task_arguments(p, task)
    p = sub.add_parser("prepare", help=_HELP["prepare"], description=_HELP["prepare"])
    from ..probe.prepare import add_prepare_arguments

    add_prepare_arguments(p)


def _add_task_arguments(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument("--data", required=True, help="JSONL manifest (or audio folder)")
    if task == "classify":
        p.add_argument("--label", required=True, help="manifest field to predict")
    else:
        p.add_argument("--text-field", help="transcript field (default: text)")
        p.add_argument("--units", help="char or bpe:N, e.g. bpe:250 (default: char)")
    p.add_argument(
        "-m",
        "--model",
        action="append",
        required=True,
        help="codec: packaged name, Hub id, folder, or random:SOURCE for the same "
        "architecture with random weights; repeat to compare several",
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-c", "--config", help="YAML recipe (see configs/probe/)")
    p.add_argument(
        "--input",
        choices=("tokens", "features"),
        help="tokens (embedding of the binary codes) or features (decompressed "
        "features, the FocalCodec-Stream protocol); default: tokens",
    )
    p.add_argument("--max-epochs", type=positive_int, help="epoch budget (default 100)")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FIELD=GLOB",
        help="keep entries whose field matches (id is the manifest path), e.g. "
        "id='librispeech/test-other/*'; repeatable",
    )
    p.add_argument(
        "--resplit",
        action="store_true",
        help="ignore the split field: carve train/valid/test from all entries",
    )
    p.add_argument("--cache-dir", help="token/feature cache (default ~/.cache/...)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override with a dot path, e.g. optim.lr=1e-3; repeatable",
    )
    add_common(p, batch=False)


def _overrides(args: argparse.Namespace) -> list[str]:
    out = [f"task={args.probe_command}", f"data.manifest={args.data}"]
    if args.probe_command == "classify":
        out.append(f"data.label={args.label}")
    else:
        if args.text_field:
            out.append(f"data.text_field={args.text_field}")
        if args.units:
            out.append(f"data.units={args.units}")
    for flag, key in (("input", "input"), ("max_epochs", "trainer.max_epochs")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    for item in args.where:
        field, sep, glob = item.partition("=")
        if not sep or not field:
            raise UsageError(f"--where {item!r}: expected FIELD=GLOB")
        out.append(f"data.where.{field}={_quoted(glob)}")
    if args.resplit:
        out.append("data.resplit=true")
    if args.cache_dir:
        out.append(f"data.cache_dir={_quoted(args.cache_dir)}")
    if args.device != "auto":
        out.append(f"trainer.device={args.device}")
    out.append(f"log.progress={'false' if args.quiet else 'true'}")
    return out + list(args.set)


def _quoted(text: str) -> str:
    # Overrides are parsed as YAML: quote so that globs and paths stay strings.
    return "'" + text.replace("'", "''") + "'"


def run(args: argparse.Namespace) -> int:
    if args.probe_command == "prepare":
        from ..probe.prepare import run_prepare

        count = run_prepare(args)
        if not args.quiet:
            write_line(f"wrote {count} entries to {args.output}")
        return 0
    from ..probe import ProbeJob, load_probe_config, run_probe

    try:
        cfg = load_probe_config(args.config, _overrides(args))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    models = list(dict.fromkeys(args.model))
    job = ProbeJob(cfg, models, args.output, force=args.force, progress=not args.quiet)
    summary = run_probe(job)
    if not args.quiet:
        for r in summary["models"]:
            write_line(_line(summary["task"], r))
        write_line(f"results: {job.out / 'results.json'}")
    return 0


def _line(task: str, r: dict) -> str:
    if task == "classify":
        score = (
            f"test accuracy {100 * r['test_accuracy']:.1f} % "
            f"(chance {100 * r['chance_accuracy']:.1f} %)"
        )
    else:
        score = f"test CER {100 * r['test_cer']:.1f} %, WER {100 * r['test_wer']:.1f} %"
    return f"{r['model']}: {score} after {r['epochs']} epochs"
