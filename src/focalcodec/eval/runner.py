"""The evaluation loop: every model over every utterance, scored, summarised, written out.

For each model, each utterance is encoded and decoded (timed), the output is resampled to
16 kHz and aligned with the original, and the metrics score it in batches of
``batch_size``. Voice conversion, when planned, runs the same way with a target-speaker
matching set and only the metrics that do not need a time-aligned reference.

Each scored batch is appended to ``per_file.jsonl`` in the output folder (with the
tokens, for the code statistics), so an interrupted run continues with ``resume=True``
where it stopped. At the end the folder holds::

    results.json    every number: models, options, summaries, per-file rows
    per_file.csv    one row per model, task and utterance
    summary.csv     one row per model and task
    summary.md      the comparison tables (reconstruction, voice conversion)
    figures/        spectrograms (original vs output) and the code-usage plot
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import FocalCodecError
from ..files.audio import load_audio
from .base import (
    EVAL_RATE,
    EvalError,
    EvalItem,
    Metric,
    MetricModels,
    MetricUnavailable,
    Row,
    available_metrics,
    create_metric,
)
from .codec_io import TimedCodec, fit_length, load_codec
from .conversion import Conversion
from .data import Utterance
from .figures import code_usage_figure, figures_available, spectrogram_figure
from .report import CODEC_COLUMNS, markdown_table, write_csv, write_json, write_text
from .tokens import TokenStats

__all__ = ["EvalOptions", "Evaluator", "ModelSpec", "evaluate"]

LOG_NAME = "per_file.jsonl"
RESULT_NAMES = ("results.json", "per_file.csv", "summary.csv", "summary.md", LOG_NAME)


@dataclass
class ModelSpec:
    """A model to evaluate: its display label and what to load it from."""

    label: str
    source: Any


@dataclass
class EvalOptions:
    """How to run an evaluation (the CLI options, as data).

    Attributes
    ----------
    out_dir
        Folder for the results.
    metrics
        Metric names or ready :class:`Metric` objects; ``None`` means all registered.
    batch_size
        Utterances scored together by each metric.
    num_figures
        Spectrogram figures per model and task (the first utterances).
    device
        Torch device for the codec.
    force, resume
        Overwrite an existing result folder, or continue the run it holds.
    reconstruct
        Evaluate resynthesis (off to run voice conversion only).
    conversions
        Voice conversions to evaluate (empty: none).
    topk
        kNN neighbours for voice conversion.
    progress
        Show tqdm progress bars.
    """

    out_dir: Path
    metrics: Sequence[str | Metric] | None = None
    batch_size: int = 8
    num_figures: int = 3
    device: str = "cpu"
    force: bool = False
    resume: bool = False
    reconstruct: bool = True
    conversions: Sequence[Conversion] = ()
    topk: int = 4
    progress: bool = True


def _stderr(message: str) -> None:
    print(f"focalcodec eval: {message}", file=sys.stderr)


@dataclass
class _Task:
    """One (model, task) pass and what it accumulates."""

    label: str
    name: str
    timed: TimedCodec
    stats: TokenStats
    rows: list[Row] = field(default_factory=list)
    pending: list[tuple[Row, EvalItem]] = field(default_factory=list)


class Evaluator:
    """Runs models over utterances and writes the report (see the module docstring).

    Parameters
    ----------
    options
        Run options.
    log
        Called with one-line warnings (default: print to stderr).
    """

    def __init__(self, options: EvalOptions, log: Callable[[str], None] = _stderr):
        if options.batch_size < 1:
            raise EvalError(f"batch size must be >= 1, got {options.batch_size}")
        self.opt = options
        self.out = Path(options.out_dir)
        self.log = log
        self.shared = MetricModels()
        self.metrics: list[Metric] = []
        self.unavailable: dict[str, str] = {}
        self.failed: list[dict[str, str]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.summaries: list[Row] = []
        self.rows: list[Row] = []
        self._done: dict[tuple[str, str, str], Row] = {}
        self._figures = figures_available()
        if self._figures:
            self.unavailable["figures"] = self._figures

    # -- set-up ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the output folder, load the resume log and set up the metrics."""
        existing = [n for n in RESULT_NAMES if (self.out / n).exists()]
        if existing and not (self.opt.force or self.opt.resume):
            raise EvalError(
                f"{self.out} already holds results ({existing[0]}); pass --force to "
                "overwrite them or --resume to continue that run"
            )
        if existing and self.opt.force and not self.opt.resume:
            (self.out / LOG_NAME).unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.opt.resume:
            self._done = _read_log(self.out / LOG_NAME)
            # Rewrite the log without a line cut by the crash, so appends start clean.
            (self.out / LOG_NAME).unlink(missing_ok=True)
            _append_log(self.out / LOG_NAME, list(self._done.values()))
        self._setup_metrics()

    def _setup_metrics(self) -> None:
        wanted = (
            self.opt.metrics if self.opt.metrics is not None else available_metrics()
        )
        for spec in wanted:
            metric = create_metric(spec) if isinstance(spec, str) else spec
            try:
                metric.setup(self.shared)
            except MetricUnavailable as exc:
                self.unavailable[metric.name] = str(exc)
                self.log(f"metric '{metric.name}' skipped: {exc}")
                continue
            self.metrics.append(metric)

    # -- main loop ------------------------------------------------------------------
    def run(self, models: Sequence[ModelSpec], utterances: Sequence[Utterance]) -> dict:
        """Evaluate every model; write and return the report.

        Parameters
        ----------
        models
            Models to compare (labels must be unique).
        utterances
            Utterances to reconstruct.

        Returns
        -------
            The report, as written to ``results.json``.
        """
        labels = [m.label for m in models]
        if len(set(labels)) != len(labels):
            raise EvalError(f"model labels must be unique, got {labels}")
        for spec in models:
            timed = TimedCodec(
                load_codec(spec.source, self.opt.device), self.opt.device
            )
            self.models[spec.label] = _describe(spec, timed.codec)
            timed.warm_up()
            if self.opt.reconstruct:
                self._run_task(spec.label, "reconstruction", timed, utterances)
            if self.opt.conversions:
                self._run_task(spec.label, "conversion", timed, self.opt.conversions)
        return self._write_report(len(utterances))

    def _run_task(
        self, label: str, name: str, timed: TimedCodec, jobs: Sequence[Any]
    ) -> None:
        stats = TokenStats(int(timed.codec.codebook_size))
        task = _Task(label, name, timed, stats)
        setup = {"matching": {}, "refs": {}}
        bar = tqdm(jobs, desc=f"{label} {name}", disable=not self.opt.progress)
        for index, job in enumerate(bar):
            key = _job_key(job)
            done = self._done.get((label, name, key))
            if done is not None:
                task.rows.append(done)
                stats.append(np.asarray(done["_toks"], dtype=np.int64))
                continue
            try:
                row, item = self._process(task, job, setup)
            except FocalCodecError as exc:
                self.failed.append(
                    {"model": label, "task": name, "key": key, "error": str(exc)}
                )
                self.log(f"{label}: {key} skipped: {exc}")
                continue
            stats.append(row["_toks"])
            task.pending.append((row, item))
            if index < self.opt.num_figures and not self._figures:
                self._spectrogram(task, item)
            if len(task.pending) >= self.opt.batch_size:
                self._flush(task)
        self._flush(task)
        self._summarize(task)

    def _process(self, task: _Task, job: Any, setup: dict) -> tuple[Row, EvalItem]:
        timed = task.timed
        source = job.source if isinstance(job, Conversion) else job
        sig = load_audio(source.path, timed.sr_in).sig
        ref = (
            sig if timed.sr_in == EVAL_RATE else load_audio(source.path, EVAL_RATE).sig
        )
        if isinstance(job, Conversion):
            matching, ref_wavs = self._target(task, job, setup)
            out = timed.run(sig, matching_set=matching, topk=self.opt.topk)
            item = EvalItem(source.key, ref, out.sig, ref_wavs, job.target)
        else:
            out = timed.run(sig)
            item = EvalItem(source.key, ref, fit_length(out.sig, ref.size))
        duration = sig.size / timed.sr_in
        row: Row = {
            "model": task.label,
            "task": task.name,
            "key": _job_key(job),
            "target": job.target if isinstance(job, Conversion) else None,
            "duration_s": duration,
            "num_tokens": int(out.toks.size),
            "bitrate_bps": out.toks.size * _bits(timed.codec) / duration,
            "enc_rtf": out.enc_seconds / duration,
            "dec_rtf": out.dec_seconds / duration,
            "_enc_s": out.enc_seconds,
            "_dec_s": out.dec_seconds,
            "_toks": out.toks,
        }
        return row, item

    def _target(
        self, task: _Task, conv: Conversion, setup: dict
    ) -> tuple[torch.Tensor, list[np.ndarray]]:
        """Matching set (M, D) and 16 kHz reference waveforms of a target speaker."""
        if conv.target not in setup["matching"]:
            timed = task.timed
            wavs = [load_audio(u.path, timed.sr_in).sig for u in conv.refs]
            feats = [timed.features(w) for w in wavs]
            setup["matching"][conv.target] = torch.cat(feats, dim=0)
            if timed.sr_in != EVAL_RATE:
                wavs = [load_audio(u.path, EVAL_RATE).sig for u in conv.refs]
            setup["refs"][conv.target] = wavs
        return setup["matching"][conv.target], setup["refs"][conv.target]

    def _flush(self, task: _Task) -> None:
        if not task.pending:
            return
        rows = [row for row, _ in task.pending]
        items = [item for _, item in task.pending]
        for metric in self._metrics_for(task.name):
            try:
                scores = metric.score(items)
            except Exception as exc:  # one broken metric must not lose the run
                self.log(f"metric '{metric.name}' failed on a batch: {exc}")
                scores = [dict.fromkeys(metric.columns, math.nan) for _ in items]
            for row, score in zip(rows, scores, strict=True):
                row.update(score)
        _append_log(self.out / LOG_NAME, rows)
        task.rows.extend(rows)
        task.pending.clear()

    def _metrics_for(self, task_name: str) -> list[Metric]:
        if task_name == "conversion":
            return [m for m in self.metrics if not m.intrusive]
        return self.metrics

    def _spectrogram(self, task: _Task, item: EvalItem) -> None:
        label = "converted" if task.name == "conversion" else "reconstruction"
        name = _safe_name(f"spec_{task.label}_{task.name}_{item.key}") + ".png"
        spectrogram_figure(
            self.out / "figures" / name,
            item.ref,
            item.est,
            f"{item.key} — {task.label} ({task.name})",
            label,
        )

    # -- summary and report ---------------------------------------------------------
    def _summarize(self, task: _Task) -> None:
        rows, codec = task.rows, task.timed.codec
        duration = sum(r["duration_s"] for r in rows)
        tokens = sum(r["num_tokens"] for r in rows)
        stats = task.stats.summarize()
        bits = _bits(codec)
        summary: Row = {
            "model": task.label,
            "task": task.name,
            "files": len(rows),
            "minutes": duration / 60,
            "bitrate_bps": tokens * bits / duration if duration else math.nan,
            "nominal_bps": float(codec.token_rate) * bits,
            "entropy_bps": stats["entropy_bits"] * tokens / duration
            if duration
            else math.nan,
            "code_usage": stats["code_usage"],
            "norm_entropy": stats["norm_entropy"],
            "enc_rtf": sum(r["_enc_s"] for r in rows) / duration
            if duration
            else math.nan,
            "dec_rtf": sum(r["_dec_s"] for r in rows) / duration
            if duration
            else math.nan,
        }
        for metric in self._metrics_for(task.name):
            summary.update(metric.summarize(rows))
        self.summaries.append(summary)
        self.rows.extend(rows)
        if task.name == "reconstruction":
            self.counts[task.label] = task.stats.counts.copy()

    def _directions(self) -> dict[str, bool | None]:
        directions = dict(CODEC_COLUMNS)
        for metric in self.metrics:
            for col in metric.columns:
                directions[col] = metric.higher_is_better.get(col)
        return directions

    def _write_report(self, num_utterances: int) -> dict:
        public_rows = [
            {k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows
        ]
        report = {
            "format": "focalcodec-eval/1",
            "models": self.models,
            "utterances": num_utterances,
            "conversions": len(self.opt.conversions),
            "metrics": [m.name for m in self.metrics],
            "unavailable": self.unavailable,
            "failed": self.failed,
            "environment": _environment(self.opt.device),
            "summary": self.summaries,
            "per_file": public_rows,
        }
        write_json(self.out / "results.json", report)
        write_csv(self.out / "per_file.csv", public_rows)
        write_csv(self.out / "summary.csv", self.summaries)
        write_text(self.out / "summary.md", self._markdown())
        if self.counts and not self._figures:
            code_usage_figure(self.out / "figures" / "code_usage.png", self.counts)
        return report

    def _markdown(self) -> str:
        directions = self._directions()
        parts = ["# FocalCodec evaluation\n"]
        for name, title in (
            ("reconstruction", "Reconstruction"),
            ("conversion", "Voice conversion"),
        ):
            rows = [s for s in self.summaries if s["task"] == name]
            if rows:
                parts.append(f"\n## {title}\n\n" + markdown_table(rows, directions))
        notes = [f"- `{n}` unavailable: {why}" for n, why in self.unavailable.items()]
        notes += [
            f"- {f['model']}: `{f['key']}` failed: {f['error']}" for f in self.failed
        ]
        if notes:
            parts.append("\n## Notes\n\n" + "\n".join(notes) + "\n")
        return "".join(parts)


def evaluate(
    models: Sequence[ModelSpec],
    utterances: Sequence[Utterance],
    options: EvalOptions,
    log: Callable[[str], None] = _stderr,
) -> dict:
    """Prepare an :class:`Evaluator`, run it and return the report."""
    evaluator = Evaluator(options, log)
    evaluator.prepare()
    return evaluator.run(models, utterances)


def _job_key(job: Any) -> str:
    if isinstance(job, Conversion):
        return f"{job.source.key} -> {job.target}"
    return job.key


def _bits(codec: Any) -> float:
    bits = getattr(codec, "bits_per_token", None)
    return float(bits) if bits else math.log2(int(codec.codebook_size))


def _describe(spec: ModelSpec, codec: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "source": str(spec.source) if isinstance(spec.source, (str, Path)) else None
    }
    for attr in (
        "model_id",
        "sample_rate_input",
        "sample_rate_output",
        "codebook_size",
        "bits_per_token",
        "token_rate",
        "causal",
        "latency",
    ):
        info[attr] = getattr(codec, attr, None)
    hasher = getattr(codec, "config_hash", None)
    info["config_hash"] = hasher() if callable(hasher) else None
    return info


def _environment(device: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:150]


def _append_log(path: Path, rows: Sequence[Row]) -> None:
    with open(path, "a", encoding="utf-8") as fileobj:
        for row in rows:
            clean = {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in row.items()
            }
            fileobj.write(json.dumps(clean, allow_nan=True) + "\n")
        fileobj.flush()
        os.fsync(fileobj.fileno())


def _read_log(path: Path) -> dict[tuple[str, str, str], Row]:
    done: dict[tuple[str, str, str], Row] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as fileobj:
        for line in fileobj:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that file is simply redone
            done[row["model"], row["task"], row["key"]] = row
    return done
