"""Which source utterance is converted to which target speaker, with which references.

FocalCodec converts voices by kNN matching: the decompressed features of the source are
replaced by their nearest neighbours among the WavLM features of the target speaker's
reference recordings (``codec.toks_to_sig(toks, matching_set=...)``). This module only
plans the conversions; :mod:`.runner` runs them.

Automatic plan: for every speaker with enough utterances, the first ``num_refs`` (in key
order) form its reference set and the rest are sources. Each source is converted to the
next speaker in sorted order that is not its own (round robin), so every speaker is a
target and the plan is reproducible. An explicit plan is a JSONL file of
``{"source": PATH, "target": NAME, "refs": [PATH, ...]}`` lines, paths relative to it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import EvalError
from .data import Utterance

__all__ = ["Conversion", "load_conversions", "plan_conversions"]


@dataclass(frozen=True)
class Conversion:
    """Convert ``source`` to the voice of ``target`` using the ``refs`` recordings."""

    source: Utterance
    target: str
    refs: tuple[Utterance, ...]


def plan_conversions(
    utterances: Sequence[Utterance], num_refs: int = 3, limit: int | None = None
) -> list[Conversion]:
    """Pair sources with target speakers from the speaker labels.

    Parameters
    ----------
    utterances
        Candidate utterances; those without a speaker label are ignored.
    num_refs
        Reference utterances per target speaker (kept out of the sources).
    limit
        Keep at most this many conversions.

    Returns
    -------
        The conversions, ordered by source key.
    """
    if num_refs < 1:
        raise EvalError(f"--vc-refs must be >= 1, got {num_refs}")
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in sorted(utterances, key=lambda u: u.key):
        if utt.speaker is not None:
            by_speaker[utt.speaker].append(utt)
    refs = {spk: tuple(utts[:num_refs]) for spk, utts in by_speaker.items()}
    targets = sorted(spk for spk, utts in by_speaker.items() if len(utts) >= num_refs)
    if len(targets) < 2:
        raise EvalError(
            "voice conversion needs at least two speakers with "
            f"{num_refs} utterances each (speaker labels come from the manifest "
            "or the parent folder names)"
        )
    plan = []
    for spk in sorted(by_speaker):
        sources = by_speaker[spk][num_refs:] if spk in targets else by_speaker[spk]
        others = [t for t in targets if t != spk]
        for i, utt in enumerate(sources):
            # Start the rotation after the source speaker, then cycle through the rest.
            after = [t for t in others if t > spk] + [t for t in others if t < spk]
            target = after[i % len(after)]
            plan.append(Conversion(utt, target, refs[target]))
    plan.sort(key=lambda c: c.source.key)
    return plan[:limit] if limit is not None else plan


def load_conversions(path: str | Path) -> list[Conversion]:
    """Read an explicit plan from a JSONL file (see the module docstring).

    Parameters
    ----------
    path
        The plan file.

    Returns
    -------
        The conversions in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: voice-conversion plan not found")
    base = path.resolve().parent
    plan = []
    with open(path, encoding="utf-8") as fileobj:
        for lineno, line in enumerate(fileobj, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                entry = json.loads(line)
                source = _utterance(base, entry["source"], where)
                refs = tuple(_utterance(base, ref, where) for ref in entry["refs"])
                target = str(entry["target"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise EvalError(
                    f'{where}: expected {{"source": ..., "target": ..., "refs": [...]}} '
                    f"({exc})"
                ) from exc
            if not refs:
                raise EvalError(f"{where}: empty reference list")
            plan.append(Conversion(source, target, refs))
    if not plan:
        raise EvalError(f"{path}: the voice-conversion plan is empty")
    return plan


def _utterance(base: Path, rel: str, where: str) -> Utterance:
    if not isinstance(rel, str):
        raise TypeError(f"paths must be strings, got {rel!r}")
    full = Path(rel) if Path(rel).is_absolute() else base / rel
    if not full.is_file():
        raise EvalError(f"{where}: audio file {full} not found")
    return Utterance(Path(rel).as_posix(), full.resolve())
