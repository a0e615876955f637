"""Lhotse corpora as token sources: CutSet manifests and Shar folders, read by lhotse.

- A CutSet manifest (``cuts.jsonl.gz``, or several by glob), or a recordings manifest
  with its supervisions (``*_recordings_*.jsonl.gz`` next to ``*_supervisions_*``;
  one cut per recording, ``CutSet.from_manifests``). A manifest is cut into shards of
  :data:`CUTS_PER_SHARD` cuts (``NAME#00000``, ...), so one big manifest still spreads
  over ranks; each DataLoader worker reads its manifest once.
- A Shar folder (``CutSet.to_shar``): shard ``i`` is ``cuts.00000i.jsonl.gz`` with the
  audio field's ``recording.00000i.tar``, in the folder or, as NeMo lays them out, in
  ``cuts/`` and ``<field>/`` subfolders; ``audio_column`` names another audio field.

Each cut's audio is what lhotse would load (offset, duration, channel and transforms
applied): a mono cut that covers a whole file is read from the file itself, Shar audio
from its in-memory bytes, anything else through ``cut.load_audio()``. Supervision text,
speaker and language, the cut's start (``offset``) and channel and its scalar custom
fields are metadata. Needs ``pip install 'focalcodec[lhotse]'``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError, UsageError
from .base import Item, Shard, ShardFailure, Source, expand_spec, scalar_meta

__all__ = [
    "CUTS_PER_SHARD",
    "CutsSource",
    "SharSource",
    "manifest_kind",
    "shar_cut_ids",
]

CUTS_PER_SHARD = 1000
_SHAR_CUTS = re.compile(r"cuts\.(\d+)\.jsonl(\.gz)?")
# Custom fields lhotse itself adds while reading Shar.
_READER_FIELDS = ("shard_origin", "shar_epoch")


def _lhotse():
    try:
        import lhotse
    except ImportError:
        raise UsageError(
            "reading Lhotse manifests needs lhotse: pip install 'focalcodec[lhotse]'"
        ) from None
    return lhotse


def _open_text(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def manifest_kind(path: str | Path) -> str | None:
    """``cuts``, ``recordings`` or ``supervisions`` for a Lhotse JSONL manifest (from
    its first line), else None."""
    try:
        with _open_text(Path(path)) as fileobj:
            first = json.loads(fileobj.readline() or "null")
    except (OSError, ValueError, EOFError, UnicodeDecodeError):
        return None
    if not isinstance(first, dict):
        return None
    if str(first.get("type", "")).endswith("Cut"):
        return "cuts"
    if "sources" in first and "sampling_rate" in first:
        return "recordings"
    if "recording_id" in first and "start" in first and "duration" in first:
        return "supervisions"
    return None


def _count_lines(path: Path) -> int:
    with _open_text(path) as fileobj:
        return sum(1 for line in fileobj if line.strip())


class _LoadCut:
    """Loads a cut's audio (or a Recording's) through lhotse, where it is called."""

    def __init__(self, cut: Any, recording: Any = None) -> None:
        self.cut = cut
        self.recording = recording

    def __call__(self) -> tuple[Any, int]:
        if self.recording is not None:
            return self.recording.load_audio(), int(self.recording.sampling_rate)
        return self.cut.load_audio(), int(self.cut.sampling_rate)


def cut_audio(cut: Any, recording: Any, aligned: bool = True) -> Any:
    """The cheapest exact way to this cut's audio: its file, its Shar bytes, or lhotse.

    ``aligned``: ``recording`` is the cut's own (sliced by the cut); else a custom
    audio field (a Shar field of its own length), loaded whole.
    """
    if recording is None:
        return DataError("the cut has no audio")
    plain = not recording.transforms and len(recording.sources) == 1
    whole = not aligned or (
        abs(float(cut.start)) < 1e-9
        and recording.num_samples
        == round(float(cut.duration) * recording.sampling_rate)
    )
    source = recording.sources[0]
    if plain and whole and recording.num_channels == 1:
        if source.type == "file":
            return Path(source.source)
        if source.type == "memory" and isinstance(source.source, bytes):
            return source.source
    return _LoadCut(cut, None if aligned else recording)


def cut_meta(cut: Any) -> dict[str, Any]:
    """Supervision text (joined), speaker and language, the cut's offset, channel and
    recording, and its scalar custom fields."""
    sups = list(cut.supervisions or [])
    texts = [s.text for s in sups if s.text]
    first = sups[0] if sups else None
    channel = cut.channel if isinstance(cut.channel, int) else None
    meta = {
        "recording_id": getattr(cut, "recording_id", None),
        "offset": float(cut.start),
        "channel": channel,
        "text": " ".join(texts) if texts else None,
        "speaker": first.speaker if first else None,
        "language": first.language if first else None,
    }
    custom = scalar_meta(cut.custom or {}, skip=_READER_FIELDS)
    return {**custom, **{k: v for k, v in meta.items() if v is not None}}


def _cut_item(
    cut: Any, shard: Shard, row: int, recording: Any, path: str, aligned: bool = True
) -> Item:
    item = Item(str(cut.id), shard.name, row, None, cut_meta(cut), path=path)
    item.duration = float(cut.duration) if aligned else None
    audio = cut_audio(cut, recording, aligned)
    if isinstance(audio, BaseException):
        audio = DataError(f"{item.name}: {audio}")
    item.audio = audio
    return item


class CutsSource(Source):
    """CutSet manifests, or recordings with supervisions; see the module docstring."""

    kind = "lhotse"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        files = [Path(p) for p in expand_spec(spec)]
        missing = [p for p in files if not p.is_file()]
        if not files or missing:
            raise DataError(f"{missing[0] if missing else spec}: no such manifest")
        self.files: list[tuple[Path, Path | None]] = []
        for path in files:
            kind = manifest_kind(path)
            if kind == "cuts":
                self.files.append((path, None))
            elif kind in ("recordings", "supervisions"):
                self.files.append(_pair(path, kind))
            else:
                raise DataError(f"{path}: not a Lhotse cuts or recordings manifest")
        self.files = list(dict.fromkeys(self.files))

    def shards(self) -> list[Shard]:
        out: list[Shard] = []
        for k, (path, _) in enumerate(self.files):
            count = _count_lines(path)
            for chunk in range(max(1, -(-count // CUTS_PER_SHARD))):
                size = min(CUTS_PER_SHARD, count - chunk * CUTS_PER_SHARD)
                name = f"{path.name}#{chunk:05d}"
                out.append(Shard(len(out), name, str(path), (k, chunk), max(size, 0)))
        return out

    def _cuts(self, k: int) -> Iterable[Any]:
        lhotse = _lhotse()
        path, supervisions = self.files[k]
        if supervisions is None and manifest_kind(path) == "cuts":
            return lhotse.CutSet.from_jsonl_lazy(path)
        recordings = lhotse.RecordingSet.from_file(path)
        sups = lhotse.SupervisionSet.from_file(supervisions) if supervisions else None
        return lhotse.CutSet.from_manifests(recordings=recordings, supervisions=sups)

    def read(self, shards: Iterable[Shard]) -> Iterator[Item | ShardFailure]:
        """One pass over each manifest, yielding the cuts of the wanted shards."""
        by_file: dict[int, dict[int, Shard]] = {}
        for shard in shards:
            k, chunk = shard.part
            by_file.setdefault(k, {})[chunk] = shard
        for k, wanted in by_file.items():
            shard, last = next(iter(wanted.values())), None
            try:
                for pos, cut in enumerate(self._cuts(k)):
                    chunk, row = divmod(pos, CUTS_PER_SHARD)
                    if chunk > max(wanted):
                        break
                    if chunk in wanted:
                        shard = wanted[chunk]
                        item = _cut_item(cut, shard, row, cut.recording, shard.path)
                        last = item.id
                        yield item
            except Exception as exc:
                yield ShardFailure(shard.name, exc, last)

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        for out in self.read([shard]):
            if isinstance(out, ShardFailure):
                raise out.error
            yield out


def _pair(path: Path, kind: str) -> tuple[Path, Path | None]:
    """A recordings manifest and the supervisions named like it (or None)."""
    other = "supervisions" if kind == "recordings" else "recordings"
    partner = path.with_name(path.name.replace(kind, other))
    if partner == path or not partner.is_file():
        if kind == "supervisions":
            raise DataError(f"{path}: supervisions need their recordings ({partner})")
        return path, None
    return (path, partner) if kind == "recordings" else (partner, path)


class SharSource(Source):
    """A Lhotse Shar folder; see the module docstring."""

    kind = "shar"

    def __init__(self, spec: str, *, audio_column: str | None = None) -> None:
        super().__init__(spec)
        self.folder = Path(spec)
        self.field = audio_column or "recording"
        cuts = shar_cut_files(self.folder)
        if not cuts:
            raise DataError(f"{spec}: no Shar cut shards (cuts.000000.jsonl.gz)")
        self.cuts = cuts
        self.audio = [self._audio_file(i) for i in sorted(cuts)]

    @property
    def flat(self) -> bool:
        """Cut shards directly in the folder (``CutSet.to_shar``'s layout)."""
        return next(iter(self.cuts.values())).parent == self.folder

    def _audio_file(self, index: int) -> Path:
        candidates = [self.folder / f"{self.field}.{index:06d}.tar"]
        sub = self.folder / self.field
        if sub.is_dir():
            candidates += sorted(sub.glob(f"*.{index:06d}.tar"))
        for path in candidates:
            if path.is_file():
                return path
        raise DataError(
            f"{self.folder}: shard {index} has no {self.field!r} audio "
            f"({candidates[0].name}); name the audio field with --audio-column"
        )

    def shards(self) -> list[Shard]:
        out = []
        for k, index in enumerate(sorted(self.cuts)):
            path = self.cuts[index]
            name = path.relative_to(self.folder).as_posix()
            audio = self.audio[k]
            out.append(
                Shard(k, name, str(path), (index, str(audio)), _count_lines(path))
            )
        return out

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        lhotse = _lhotse()
        _, audio = shard.part
        cuts = lhotse.CutSet.from_shar(
            fields={"cuts": [shard.path], self.field: [audio]}
        )
        for row, cut in enumerate(cuts):
            aligned = self.field == "recording"
            if aligned:
                recording = cut.recording if cut.has_recording else None
            else:
                recording = cut.custom.get(self.field) if cut.custom else None
            yield _cut_item(cut, shard, row, recording, audio, aligned)


def shar_cut_files(folder: Path) -> dict[int, Path]:
    """Shard index -> cuts file of a Shar folder (flat, or in its ``cuts/`` folder)."""
    found: dict[int, Path] = {}
    for where in (folder, folder / "cuts"):
        if where.is_dir():
            for path in where.iterdir():
                match = _SHAR_CUTS.fullmatch(path.name)
                if match:
                    found.setdefault(int(match.group(1)), path)
        if found:
            break
    return found


def shar_cut_ids(shard: Shard) -> list[str]:
    """The cut ids of a Shar shard, in order (the order its fields must follow)."""
    with _open_text(Path(shard.path)) as fileobj:
        return [json.loads(line)["id"] for line in fileobj if line.strip()]
