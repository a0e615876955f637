"""One probe run: data and splits, then per model: cache, train, test; then the report.

Output folder (``-o OUT``)::

    probe.json            the settings (a rerun must match them) and the model folders
    splits.json           the ids of every split (a rerun must find the same)
    units.bin             ASR only: the character set or BPE model
    <model>/run/          the trainer's run folder: checkpoints, best/, metrics.csv
    <model>/result.json   that model's scores and curves (written last: "done")
    <model>/confusion.png classification only
    results.json          every model's scores and per-epoch curves
    results.md            the table across models
    learning_curves.png   loss and validation error rate per epoch, every model

A rerun with the same settings continues where the last one stopped (finished models
are skipped, interrupted ones resume from their last epoch); other settings need
``force`` (which deletes only the files listed above) or another folder. The budget
(``trainer.max_epochs``) may change between runs, so a finished run can be extended.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .. import runtime as distributed
from ..errors import DataError, FormatError, OutputExistsError
from ..files.manifest import scan
from ..train.checkpoint import load_flat_weights
from ..train.monitor import load_best
from ..train.trainer import Trainer
from .baseline import bag_of_tokens
from .cache import encode_features, encode_tokens, file_key, load_codec, model_key
from .config import ProbeConfig, probe_config_dict, train_config
from .data import ProbeDataset, Splits, assign_splits, probe_collate, select_entries
from .metrics import asr_scores, classification_scores
from .nets import ProbeNet
from .report import (
    markdown_table,
    plot_confusion,
    plot_learning_curves,
    write_bytes,
    write_json,
)
from .stage import ProbeStage, predict
from .units import Units, load_units, make_units, normalize_text

__all__ = ["ProbeJob", "default_cache_dir", "run_probe"]

_OWN_FILES = (
    "probe.json",
    "splits.json",
    "units.bin",
    "results.json",
    "results.md",
    "learning_curves.png",
)
# Settings that may change between runs of one output folder.
_FREE = {("trainer", "max_epochs"), ("trainer", "device"), ("trainer", "threads")}
_FREE |= {("log", "progress"), ("data", "cache_dir"), ("data", "num_workers")}


@dataclass
class ProbeJob:
    """What to run: a recipe, the models to compare and the output folder."""

    cfg: ProbeConfig
    models: list[str]
    out: Path
    force: bool = False
    progress: bool = True


@dataclass
class _Data:
    splits: Splits
    classes: list[str] | None
    units: Units | None
    dropped: int


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/focalcodec/probe`` (``~/.cache/focalcodec/probe``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "focalcodec" / "probe"


def _settings(cfg: ProbeConfig) -> dict[str, Any]:
    data = probe_config_dict(cfg)
    for block, key in _FREE:
        data[block].pop(key, None)
    return data


def _slug(spec: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._-")[-60:] or "model"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _prepare_output(job: ProbeJob) -> dict[str, str]:
    """Check or start the output folder; returns model spec -> folder name."""
    out, record = job.out, job.out / "probe.json"
    manifest = Path(job.cfg.data.manifest).resolve()
    if out == manifest or out in manifest.parents:
        raise OutputExistsError(f"{out}: the output folder holds the input manifest")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: output exists and is not a folder")
    settings = _settings(job.cfg)
    old = _read_json(record) if record.exists() else None
    if old is not None and job.force:
        _clear(out, old.get("models", {}).values())
        old = None
    elif old is not None and old["settings"] != settings:
        raise OutputExistsError(
            f"{out} holds a probe run with other settings "
            f"({_first_difference(old['settings'], settings)}); pass --force to start "
            "over or choose another output folder"
        )
    elif old is None and out.exists() and any(out.iterdir()) and not job.force:
        raise OutputExistsError(
            f"{out} exists and is not a probe output folder; pass --force to write "
            "into it anyway or choose another output folder"
        )
    folders = dict(old["models"]) if old else {}
    for spec in job.models:
        if spec not in folders:
            folders[spec] = _slug(spec, set(folders.values()))
    write_json(record, {"version": 1, "settings": settings, "models": folders})
    return folders


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(
            f"{path}: unreadable ({exc}); pass --force to start the probe over"
        ) from None


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    return f"{path.lstrip('.')}: {a!r} before, {b!r} now"


def _clear(out: Path, folders) -> None:
    for name in _OWN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in folders:
        shutil.rmtree(out / name, ignore_errors=True)


# --------------------------------------------------------------------------- data


def _prepare_data(job: ProbeJob, dist: distributed.DistInfo) -> _Data:
    cfg, dcfg = job.cfg, job.cfg.data
    entries = scan(dcfg.manifest, root=dcfg.root)
    required = dcfg.label if cfg.task == "classify" else dcfg.text_field
    selected, dropped = select_entries(entries, dcfg.where, required)
    if cfg.task == "asr":
        kept = [e for e in selected if normalize_text(e.meta[required])]
        dropped, selected = dropped + len(selected) - len(kept), kept
    label = dcfg.label
    splits = assign_splits(
        selected,
        resplit=dcfg.resplit,
        valid_fraction=dcfg.valid_fraction,
        test_fraction=dcfg.test_fraction,
        seed=dcfg.split_seed,
        group=(lambda e: str(e.meta[label])) if cfg.task == "classify" else None,
    )
    if dist.is_main:
        _record_splits(job.out / "splits.json", splits)
    classes = units = None
    if cfg.task == "classify":
        classes = sorted({str(e.meta[label]) for e in selected})
    else:
        units = _units(job, splits, dist)
    return _Data(splits, classes, units, dropped)


def _record_splits(path: Path, splits: Splits) -> None:
    ids = {name: [e.id for e in getattr(splits, name)] for name in splits.sizes()}
    if path.exists():
        if _read_json(path) != ids:
            raise DataError(
                f"the selected entries or their splits changed since the first run "
                f"in {path.parent}; pass --force to start over"
            )
        return
    write_json(path, ids)


def _units(job: ProbeJob, splits: Splits, dist: distributed.DistInfo) -> Units:
    path = job.out / "units.bin"
    if dist.is_main and not path.exists():
        field = job.cfg.data.text_field
        texts = [normalize_text(e.meta[field]) for e in splits.train]
        write_bytes(path, make_units(job.cfg.data.units, texts).to_bytes())
    distributed.barrier()
    return load_units(path)


# ------------------------------------------------------------------------- inputs


def _inputs(job: ProbeJob, codec, data: _Data, dist: distributed.DistInfo):
    """Cache and load the inputs; returns (load, frames per path, frame rate, dim,
    tokens per path)."""
    cfg = job.cfg
    cache_root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    entries = data.splits.train + data.splits.valid + data.splits.test
    show = job.progress and dist.is_main
    tokens = encode_tokens(codec, entries, cache_root, dist.rank, dist.world_size, show)
    toks = {str(e.path): torch.from_numpy(tokens[file_key(e.path)]) for e in entries}
    frames = {path: int(t.shape[0]) for path, t in toks.items()}
    if cfg.input == "tokens":
        return toks.__getitem__, frames, codec.token_rate, None, toks
    load = encode_features(
        codec,
        entries,
        tokens,
        cache_root,
        cfg.data.feature_dtype,
        dist.rank,
        dist.world_size,
        show,
    )
    distributed.barrier()
    first = str(entries[0].path)
    sample = load(first)
    ratio = sample.shape[0] / max(frames[first], 1)
    frames = {path: round(n * ratio) for path, n in frames.items()}
    return load, frames, codec.token_rate * ratio, int(sample.shape[1]), toks


def _datasets(job: ProbeJob, data: _Data, load, frames, frame_rate):
    """Datasets and entries of each split, and how many training items were left out
    (``too_long``: over ``max_train_seconds``; ``too_short``: fewer frames than CTC
    targets)."""
    cfg = job.cfg
    sets, kept, left_out = {}, {}, {"too_long": 0, "too_short": 0}
    longest = cfg.data.max_train_seconds
    for name in data.splits.sizes():
        entries = [e for e in getattr(data.splits, name) if frames[str(e.path)] > 0]
        if name == "train" and longest:
            limit = longest * frame_rate
            too_long = [e for e in entries if frames[str(e.path)] > limit]
            entries = [e for e in entries if frames[str(e.path)] <= limit]
            left_out["too_long"] = len(too_long)
        if cfg.task == "classify":
            index = {c: i for i, c in enumerate(data.classes)}
            targets = [index[str(e.meta[cfg.data.label])] for e in entries]
        else:
            field = cfg.data.text_field
            targets = [
                data.units.encode(normalize_text(e.meta[field])) for e in entries
            ]
            if name == "train":
                # CTC needs at least one frame per target unit.
                keep = [frames[str(e.path)] >= len(t) for e, t in zip(entries, targets)]
                left_out["too_short"] = keep.count(False)
                entries = [e for e, k in zip(entries, keep) if k]
                targets = [t for t, k in zip(targets, keep) if k]
        crop = None
        if name == "train" and cfg.task == "classify" and cfg.data.crop_seconds:
            crop = max(1, round(cfg.data.crop_seconds * frame_rate))
        keys = [str(e.path) for e in entries]
        sets[name] = ProbeDataset(keys, load, targets, crop, cfg.trainer.seed)
        kept[name] = entries
    return sets, kept, left_out


# ------------------------------------------------------------------------ a model


def _done(path: Path, cfg: ProbeConfig) -> dict[str, Any] | None:
    if not path.exists():
        return None
    result = _read_json(path)
    if result["stopped_early"] or result["epochs"] >= cfg.trainer.max_epochs:
        return result
    return None


def _probe_model(
    job: ProbeJob, spec: str, folder: Path, data: _Data, dist
) -> dict[str, Any]:
    cfg = job.cfg
    finished = _done(folder / "result.json", cfg)
    if finished is not None:
        return finished
    started = time.time()
    codec = load_codec(spec, dist.device, cfg.trainer.seed)
    load, frames, frame_rate, dim, toks = _inputs(job, codec, data, dist)
    sets, kept, left_out = _datasets(job, data, load, frames, frame_rate)
    baseline = _baseline(cfg, sets, kept, toks, codec.codebook_size, data)
    num_outputs = len(data.classes) if cfg.task == "classify" else data.units.size + 1
    torch.manual_seed(cfg.trainer.seed)
    net = ProbeNet(
        num_outputs,
        pooled=cfg.task == "classify",
        codebook=codec.codebook if cfg.input == "tokens" else None,
        feature_dim=dim,
        hidden=cfg.net.hidden,
        layers=cfg.net.layers,
        dropout=cfg.net.dropout,
        norm=cfg.net.norm,
    )
    facts = _model_facts(spec, codec, frame_rate, net, cfg)
    del codec  # the encoder is not needed any more: free its memory for training
    tcfg = train_config(cfg, folder / "run")
    stage = ProbeStage(tcfg, dist.device, net, cfg.task, {"task": cfg.task, **facts})
    resume = (folder / "run" / "checkpoints").is_dir()
    trainer = Trainer(
        stage,
        tcfg,
        dist,
        sets["train"],
        sets["valid"],
        collate_fn=probe_collate,
        resume=resume,
    )
    trainer.fit()
    result = None
    if dist.is_main:
        scores = _test(job, stage, trainer, sets["test"], kept["test"], data, dist)
        result = {**facts, **scores, **_training_facts(trainer)}
        result["baseline"] = baseline
        result["num_train"] = len(sets["train"])
        result["train_items_left_out"] = left_out
        result["wall_seconds"] = round(time.time() - started, 1)
        if cfg.task == "classify":
            title = f"{spec}: test accuracy {100 * scores['test_accuracy']:.1f} %"
            plot_confusion(
                scores["confusion"], data.classes, title, folder / "confusion.png"
            )
        write_json(folder / "result.json", result)
    distributed.barrier()
    return result or _read_json(folder / "result.json")


def _baseline(cfg, sets, kept, toks, codebook_size: int, data: _Data):
    """The bag-of-tokens baseline on the probe's splits (classification; else None)."""
    if cfg.task != "classify":
        return None
    splits = {
        name: ([toks[str(e.path)] for e in kept[name]], sets[name].targets)
        for name in ("train", "valid", "test")
    }
    scores = bag_of_tokens(splits, codebook_size, len(data.classes), cfg.trainer.seed)
    return {"name": "bag of tokens (linear, token histograms)", **scores}


def _model_facts(spec, codec, frame_rate, net, cfg) -> dict[str, Any]:
    return {
        "model": spec,
        "model_key": model_key(codec),
        "input": cfg.input,
        "token_rate": codec.token_rate,
        "bits_per_token": codec.bits_per_token,
        "codebook_size": codec.codebook_size,
        "frame_rate": frame_rate,
        "num_params": sum(p.numel() for p in net.parameters()),
    }


def _training_facts(trainer: Trainer) -> dict[str, Any]:
    mon = trainer.monitor
    best = next((h for h in mon.history if h["step"] == mon.best_step), None)
    curves = [
        {
            "epoch": h["epoch"],
            "step": h["step"],
            "train_loss": h.get("train_loss"),
            "valid_loss": h.get("valid_loss"),
            "valid_error_rate": h.get("valid_error_rate"),
            "lr": h.get("lr_probe"),
        }
        for h in mon.history
    ]
    return {
        "epochs": trainer.epoch,
        "best_metric": mon.key,
        "best_epoch": best["epoch"] if best else None,
        "best_value": mon.best,
        "stopped_early": mon.stopped,
        "curves": curves,
    }


def _test(job, stage, trainer, test_set, entries, data: _Data, dist) -> dict:
    """Scores of the best weights (the last ones without validation) on the test set."""
    if trainer.best_dir.is_dir():
        weights, _ = load_best(trainer.best_dir)
        load_flat_weights(stage.nets, weights, trainer.best_dir)
    loader = DataLoader(
        test_set, batch_size=job.cfg.data.valid_batch_size, collate_fn=probe_collate
    )
    preds = predict(stage.nets["probe"], loader, dist.device, job.cfg.task)
    if job.cfg.task == "classify":
        return classification_scores(test_set.targets, preds, len(data.classes))
    field = job.cfg.data.text_field
    refs = [normalize_text(e.meta[field]) for e in entries]
    hyps = [normalize_text(data.units.decode(p)) for p in preds]
    return asr_scores(refs, hyps)


# --------------------------------------------------------------------------- run


def run_probe(job: ProbeJob) -> dict[str, Any]:
    """Run a probe for every model of ``job`` (one of many processes under torchrun).

    Returns
    -------
        The content of ``results.json``.
    """
    cfg = job.cfg
    job.out = Path(job.out).resolve()
    dist = distributed.setup(cfg.trainer.device)
    try:
        if cfg.trainer.threads:
            torch.set_num_threads(cfg.trainer.threads)
        if dist.is_main:
            folders = _prepare_output(job)
        distributed.barrier()
        if not dist.is_main:
            record = _read_json(job.out / "probe.json")
            folders = record["models"]
        data = _prepare_data(job, dist)
        results = [
            _probe_model(job, spec, job.out / folders[spec], data, dist)
            for spec in job.models
        ]
        summary = _summary(job, data, results)
        if dist.is_main:
            _write_report(job, summary)
        distributed.barrier()
        return summary
    finally:
        distributed.cleanup()


def _summary(job: ProbeJob, data: _Data, results: list[dict]) -> dict[str, Any]:
    cfg = job.cfg
    info: dict[str, Any] = {
        "manifest": str(Path(cfg.data.manifest).resolve()),
        "where": cfg.data.where,
        "sizes": data.splits.sizes(),
        "carved": data.splits.carved,
        "dropped_entries": data.dropped,
    }
    if cfg.task == "classify":
        info.update(label=cfg.data.label, classes=data.classes)
    else:
        info.update(text_field=cfg.data.text_field, units=data.units.spec)
        info["num_units"] = data.units.size
    return {
        "task": cfg.task,
        "metric": "error_rate" if cfg.task == "classify" else "wer",
        "input": cfg.input,
        "data": info,
        "config": probe_config_dict(cfg),
        "models": results,
    }


def _write_report(job: ProbeJob, summary: dict[str, Any]) -> None:
    write_json(job.out / "results.json", summary)
    data = summary["data"]
    what = data.get("label") or f"{data.get('units')} units"
    head = (
        f"Probe `{summary['task']}` ({what}, input {summary['input']}) on "
        f"`{data['manifest']}`: {data['sizes']['train']} train / "
        f"{data['sizes']['valid']} valid / {data['sizes']['test']} test items.\n\n"
    )
    table = markdown_table(summary["task"], summary["models"])
    write_bytes(job.out / "results.md", (head + table).encode())
    plot_learning_curves(summary["models"], job.out / "learning_curves.png")
