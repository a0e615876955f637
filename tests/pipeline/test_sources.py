"""Corpora where they live: sources built with the real libraries (``datasets``,
``webdataset``, ``lhotse``) from the test clips, tokenized, read back with those
libraries, and compared with tokenizing the same audio files (identical tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from focalcodec.errors import DataError, UsageError
from focalcodec.pipeline.sources import detect_kind, open_source
from focalcodec.tokens.dataset import TokenDataset
from support import AUDIO
from support import run_cli as run

datasets = pytest.importorskip("datasets")
wds = pytest.importorskip("webdataset")
lhotse = pytest.importorskip("lhotse")

MODEL = "noncausal_vocos_50hz"
# Short clips of four languages, and one at 48 kHz (resampled on the way in).
CLIPS = [
    "librispeech/dev-clean/84/84-121123-0000.flac",
    "multilingual/es/conf-hasleft.flac",
    "multilingual/fr/conf-enteringno.flac",
    "multilingual/it/agent-loggedoff.flac",
    "multilingual/it/agent-loginok.flac",
    "multilingual/it/agent-newlocation.flac",
    "noisy/p257_003.flac",
]
IDS = [Path(c).stem for c in CLIPS]
SPEAKERS = [c.split("/")[-2] for c in CLIPS]


@pytest.fixture(scope="module")
def model(golden_dir) -> str:
    return str(golden_dir / MODEL)


@pytest.fixture(scope="module")
def files_manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "clips.jsonl"
    lines = [json.dumps({"id": i, "path": str(AUDIO / c)}) for i, c in zip(IDS, CLIPS)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, files_manifest, model) -> dict[str, np.ndarray]:
    """Tokens of the clips tokenized from their files, by id."""
    out = tmp_path_factory.mktemp("ref") / "toks"
    assert run("tokenize", files_manifest, "-o", out, "-m", model, "-q") == 0
    return {item["id"]: item["tokens"] for item in TokenDataset(out)}


def audio_dataset(prefix: str = ""):
    """A ``datasets.Dataset`` with an ``Audio`` column holding the clips' bytes."""
    rows = {
        "audio": [
            {"bytes": (AUDIO / c).read_bytes(), "path": Path(c).name} for c in CLIPS
        ],
        "id": [prefix + i for i in IDS],
        "speaker": SPEAKERS,
        "chapter": list(range(len(CLIPS))),
    }
    return datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio())


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> Path:
    """The Hub's Parquet layout: data/train-0000k-of-00002.parquet and a test split."""
    root = tmp_path_factory.mktemp("parquet")
    (root / "data").mkdir()
    ds = audio_dataset()
    ds.select(range(4)).to_parquet(root / "data" / "train-00000-of-00002.parquet")
    ds.select(range(4, 7)).to_parquet(root / "data" / "train-00001-of-00002.parquet")
    test = audio_dataset(prefix="test-").select(range(1))
    test.to_parquet(root / "data" / "test-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def tar_dir(tmp_path_factory) -> Path:
    """Two WebDataset shards, Emilia-style: KEY.flac + KEY.json (+ KEY.txt)."""
    root = tmp_path_factory.mktemp("wds")
    for k, part in enumerate([range(0, 4), range(4, 7)]):
        with wds.TarWriter(str(root / f"shard-{k:06d}.tar")) as writer:
            for i in part:
                writer.write({
                    "__key__": IDS[i],
                    "flac": (AUDIO / CLIPS[i]).read_bytes(),
                    "json": {"speaker": SPEAKERS[i], "dnsmos": 3.5, "id": f"u{i}"},
                    "txt": f"text {i}",
                })  # fmt: skip
    return root


def lhotse_cuts():
    recs = [
        lhotse.Recording.from_file(AUDIO / c, recording_id=i)
        for i, c in zip(IDS, CLIPS)
    ]
    sups = [
        lhotse.SupervisionSegment(
            id=r.id, recording_id=r.id, start=0, duration=r.duration,
            text=f"words of {r.id}", speaker=s, language="xx",
        )
        for r, s in zip(recs, SPEAKERS)
    ]  # fmt: skip
    return lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings(recs),
        supervisions=lhotse.SupervisionSet.from_segments(sups),
    )


@pytest.fixture(scope="module")
def shar_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shar") / "corpus"
    root.mkdir()
    lhotse_cuts().to_shar(root, fields={"recording": "flac"}, shard_size=4)
    return root


def tokens_by_source_id(out: Path) -> dict[str, np.ndarray]:
    return {item["id"]: item["tokens"] for item in TokenDataset(out, verify=True)}


def assert_tokens_equal(got: dict, reference: dict, key=lambda i: i) -> None:
    """Every item of ``got`` has the tokens of its reference item ``key(id)``, and
    every reference item is there."""
    assert {key(i) for i in got} == set(reference)
    for item_id, toks in got.items():
        np.testing.assert_array_equal(toks, reference[key(item_id)], err_msg=item_id)


def test_kinds_are_detected(parquet_dir, tar_dir, shar_dir, files_manifest, tmp_path):
    cuts = tmp_path / "cuts.jsonl.gz"
    lhotse_cuts().to_file(cuts)
    audio_dataset().save_to_disk(tmp_path / "disk")
    assert detect_kind(str(parquet_dir)) == "parquet"
    assert (
        detect_kind(str(parquet_dir / "data" / "test-00000-of-00001.parquet"))
        == "parquet"
    )
    assert detect_kind(str(tar_dir)) == "wds"
    assert detect_kind(str(tar_dir / "shard-{000000..000001}.tar")) == "wds"
    assert detect_kind(str(tar_dir / "*.tar")) == "wds"
    assert detect_kind(str(cuts)) == "lhotse"
    assert detect_kind(str(shar_dir)) == "shar"
    assert detect_kind(str(tmp_path / "disk")) == "arrow"
    assert detect_kind(str(files_manifest)) == "files"
    assert detect_kind(str(AUDIO)) == "files"
    assert detect_kind("openslr/librispeech_asr") == "hub"
    brace = open_source(str(tar_dir / "shard-{000000..000001}.tar"))
    assert [s.name for s in brace.shards()] == ["shard-000000.tar", "shard-000001.tar"]


def test_parquet_source_and_sink(tmp_path, parquet_dir, model, reference, capsys):
    out = tmp_path / "toks"
    args = ("tokenize", parquet_dir, "-o", out, "-m", model, "--format", "parquet")
    assert run(*args, "--split", "train", "--batched") == 0
    assert "dataset card: " in capsys.readouterr().err
    assert_tokens_equal(tokens_by_source_id(out), reference)
    first = TokenDataset(out)[0]
    assert first["speaker"] == SPEAKERS[0] and first["split"] == "train"
    assert (
        first["chapter"] == 0 and first["shard"] == "data/train-00000-of-00002.parquet"
    )
    # The Parquet files load with `datasets`; the card names the model and command.
    files = str(out / "part-*.parquet")
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    assert sorted(loaded["id"]) == sorted(IDS)
    for row in loaded:
        assert row["tokens"] == reference[row["id"]].tolist()
        assert row["chapter"] == IDS.index(row["id"]) and row["split"] == "train"
        assert json.loads(row["extra"]) == {}  # every field has its column
    assert loaded.features["chapter"].dtype == "int64"
    card = (out / "README.md").read_text()
    assert "| token rate | 50.0 tokens per second |" in card
    assert "| codebook size | 1024 (10 bits per token) |" in card
    assert "--format parquet" in card and "data_files:" in card
    by_card = datasets.load_dataset(str(out), split="train")
    assert len(by_card) == len(IDS)
    # Without --split both splits are read; the test split's row is its own item.
    both = tmp_path / "both"
    assert run("tokenize", parquet_dir, "-o", both, "-m", model, "-q") == 0
    splits = [item["split"] for item in TokenDataset(both)]
    assert splits.count("test") == 1 and len(splits) == len(IDS) + 1


def part_kinds(out: Path) -> list[dict[str, str]]:
    """Column -> Arrow type of each Parquet data file of a token folder."""
    import pyarrow.parquet as pq

    files = sorted(out.glob("part-*.parquet"))
    return [{f.name: str(f.type) for f in pq.read_schema(p)} for p in files]


def test_parquet_sink_keeps_the_source_columns_and_types(tmp_path, model, reference):
    """Scalar columns get typed columns, the same in every file; names of ours are
    kept aside; a value that does not fit its column's type waits in ``extra``."""
    n, ds = len(IDS), audio_dataset().rename_column("id", "utt")
    rows = {"text": [f"words {k}" for k in range(n)], "speaker_id": [100 + k for k in
            range(n)], "score": [k / 4 for k in range(n)], "clean": [k % 2 == 0 for k
            in range(n)], "tokens": ["theirs"] * n, "extra": list(range(n)),
            "source_path": ["mine"] * n}  # fmt: skip
    for name, values in rows.items():
        ds = ds.add_column(name, values)
    ds.select(range(4)).to_parquet(tmp_path / "a.parquet")
    # The second file's score is text: null in the float column, kept in extra.
    later = ds.select(range(4, n)).remove_columns(["score"])
    later.add_column("score", ["n/a"] * (n - 4)).to_parquet(tmp_path / "b.parquet")
    out = tmp_path / "toks"
    args = ("tokenize", f"{tmp_path}/*.parquet", "-o", out, "-m", model, "-q")
    assert run(*args, "--format=parquet", "--shard-size=3", "--id-column=utt") == 0
    kinds = part_kinds(out)
    assert len(kinds) == 3 and kinds[1] == kinds[0] and kinds[2] == kinds[0]
    assert {k: kinds[0].get(k) for k in [*rows, "source_tokens", "source_extra",
            "source_source_path", "shard_row", "utt"]} == {"text": "string",
            "speaker_id": "int64", "score": "double", "clean": "bool",
            "tokens": "list<element: uint16>", "extra": "string",
            "source_tokens": "string", "source_extra": "int64", "source_path": None,
            "source_source_path": "string", "shard_row": "int64", "utt": None}  # fmt: skip
    files = str(out / "part-*.parquet")
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    for row in loaded:
        k = IDS.index(row["id"])
        assert row["tokens"] == reference[row["id"]].tolist()
        assert (row["text"], row["speaker_id"]) == (f"words {k}", 100 + k)
        assert (row["clean"], row["source_extra"]) == (k % 2 == 0, k)
        assert (row["source_tokens"], row["source_source_path"]) == ("theirs", "mine")
        assert (row["score"], json.loads(row["extra"])) == (
            (k / 4, {}) if k < 4 else (None, {"score": "n/a"})
        )
    assert [TokenDataset(out)[k]["score"] for k in (1, 5)] == [0.25, "n/a"]
    card = (out / "README.md").read_text()
    assert "`speaker_id` (int64)" in card and "`score` (float64)" in card


def test_parquet_sink_columns_survive_a_resumed_run(tmp_path, model, reference):
    """A run that broke off on a bad file, resumed once it is mended: one schema."""
    ds = audio_dataset().add_column("age", list(range(len(IDS))))
    ds.select(range(4)).to_parquet(tmp_path / "a.parquet")
    ds.select(range(4, len(IDS))).to_parquet(tmp_path / "b.parquet")
    good = (tmp_path / "b.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(good[: len(good) // 2])
    out = tmp_path / "toks"
    args = ("tokenize", f"{tmp_path}/*.parquet", "-o", out, "-m", model, "-q")
    assert run(*args, "--format=parquet", "--shard-size=2") == 1
    assert TokenDataset(out).ids == IDS[:4] and len(part_kinds(out)) == 2
    (tmp_path / "b.parquet").write_bytes(good)
    assert run(*args, "--format=parquet", "--shard-size=2") == 0
    kinds = part_kinds(out)
    assert len(kinds) == 4 and all(k == kinds[0] for k in kinds)
    assert kinds[0]["age"] == "int64"
    assert_tokens_equal(tokens_by_source_id(out), reference)
    loaded = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"))
    assert sorted(loaded["train"]["age"]) == list(range(len(IDS)))


def test_webdataset_columns_come_from_the_first_items(tmp_path, tar_dir, model):
    import pyarrow.parquet as pq

    shard = tmp_path / "mixed-000000.tar"
    with wds.TarWriter(str(shard)) as writer:
        for k, score in enumerate([1, "high"]):
            writer.write({"__key__": IDS[k], "flac": (AUDIO / CLIPS[k]).read_bytes(),
                          "json": {"age": 30 + k, "score": score}})  # fmt: skip
    for source, name in ((tar_dir, "toks"), (shard, "mixed")):
        args = ("tokenize", source, "-o", tmp_path / name, "-m", model, "-q")
        assert run(*args, "--format", "parquet") == 0
    kinds = part_kinds(tmp_path / "toks")[0]
    assert [kinds[k] for k in ("dnsmos", "speaker", "text", "source_id")] == [
        "double", "string", "string", "string",
    ]  # fmt: skip
    mixed = pq.read_table(sorted((tmp_path / "mixed").glob("*.parquet")))
    assert "score" not in mixed.column_names  # no one type: in extra
    assert str(mixed.column("age").type) == "int64"
    assert mixed.column("age").to_pylist() == [30, 31]
    extras = [json.loads(e) for e in mixed.column("extra").to_pylist()]
    assert extras == [{"score": 1}, {"score": "high"}]


def test_parquet_id_defaults_to_shard_and_row(tmp_path, model, reference):
    ds = audio_dataset().remove_columns(["id"])
    ds.to_parquet(tmp_path / "clips.parquet")
    out = tmp_path / "toks"
    assert (
        run("tokenize", tmp_path / "clips.parquet", "-o", out, "-m", model, "-q") == 0
    )
    got = tokens_by_source_id(out)
    assert list(got) == [f"clips.parquet:{k}" for k in range(len(IDS))]
    assert_tokens_equal(got, reference, key=lambda i: IDS[int(i.split(":")[1])])


def test_save_to_disk_source(tmp_path, model, reference):
    audio_dataset().save_to_disk(tmp_path / "disk", num_shards=2)
    out = tmp_path / "toks"
    assert run("tokenize", tmp_path / "disk", "-o", out, "-m", model, "-q") == 0
    assert_tokens_equal(tokens_by_source_id(out), reference)
    assert {i["shard"] for i in TokenDataset(out)} == {
        "data-00000-of-00002.arrow", "data-00001-of-00002.arrow",
    }  # fmt: skip


def test_webdataset_source(tmp_path, tar_dir, model, reference):
    out = tmp_path / "toks"
    pattern = tar_dir / "shard-{000000..000001}.tar"
    assert run("tokenize", pattern, "-o", out, "-m", model, "-q") == 0
    assert_tokens_equal(tokens_by_source_id(out), reference)
    item = TokenDataset(out)[5]
    assert item["id"] == IDS[5] and item["text"] == "text 5"
    assert item["speaker"] == SPEAKERS[5] and item["dnsmos"] == 3.5
    assert item["source_id"] == "u5"  # a source field named like ours is kept aside
    # --id-column takes the ids from a JSON field instead of the keys.
    by_field = tmp_path / "by_field"
    args = ("tokenize", pattern, "-o", by_field, "-m", model, "-q", "--id-column", "id")
    assert run(*args) == 0
    assert TokenDataset(by_field).ids == [f"u{i}" for i in range(len(IDS))]


def test_lhotse_manifest_source(tmp_path, model, reference, golden_dir):
    from focalcodec import FocalCodec

    cuts = lhotse_cuts()
    # One more cut: a second of the first clip, from 0.5 s on.
    part = cuts[0].truncate(offset=0.5, duration=1.0).with_id("part")
    lhotse.CutSet.from_cuts([*cuts, part]).to_file(tmp_path / "cuts.jsonl.gz")
    out = tmp_path / "toks"
    assert (
        run("tokenize", tmp_path / "cuts.jsonl.gz", "-o", out, "-m", model, "-q") == 0
    )
    got = tokens_by_source_id(out)
    expected_part = got.pop("part")
    assert_tokens_equal(got, reference, key=lambda i: i.rsplit("-", 1)[0])
    item = TokenDataset(out)[1]
    assert item["text"] == f"words of {IDS[1]}" and item["speaker"] == SPEAKERS[1]
    assert item["language"] == "xx" and item["channel"] == 0
    # The offset cut: the solo tokens of exactly those samples of the file.
    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    sig = lhotse.Recording.from_file(AUDIO / CLIPS[0]).load_audio()[0]
    import torch

    with torch.inference_mode():
        solo = codec.sig_to_toks(torch.from_numpy(sig[8000:24000])[None])[0].numpy()
    np.testing.assert_array_equal(expected_part, solo)
    assert TokenDataset(out).ids[-1] == "part"  # source order


def test_recordings_with_supervisions(tmp_path, model, reference):
    cuts = lhotse_cuts()
    recs = lhotse.RecordingSet.from_recordings(c.recording for c in cuts)
    sups = lhotse.SupervisionSet.from_segments(s for c in cuts for s in c.supervisions)
    recs.to_file(tmp_path / "clips_recordings_all.jsonl.gz")
    sups.to_file(tmp_path / "clips_supervisions_all.jsonl.gz")
    out = tmp_path / "toks"
    source = tmp_path / "clips_recordings_all.jsonl.gz"
    assert run("tokenize", source, "-o", out, "-m", model, "-q") == 0
    assert_tokens_equal(
        tokens_by_source_id(out), reference, key=lambda i: i.rsplit("-", 1)[0]
    )
    assert TokenDataset(out)[0]["text"] == f"words of {IDS[0]}"


def shar_fields(shar: Path, codes: Path, field: str = "codes") -> dict:
    return {
        "cuts": sorted(str(p) for p in shar.glob("cuts.*.jsonl.gz")),
        "recording": sorted(str(p) for p in shar.glob("recording.*.tar")),
        field: sorted(str(p) for p in codes.glob(f"{field}.*.tar")),
    }


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shar_source_and_field(tmp_path, shar_dir, model, reference, capsys):
    before = snapshot(shar_dir)
    codes = tmp_path / "corpus_codes"
    args = ("tokenize", shar_dir, "-o", codes, "-m", model, "--format", "shar")
    assert run(*args) == 0
    assert "2 file(s) written" in capsys.readouterr().err
    assert snapshot(shar_dir) == before  # the Shar folder is only read
    cuts = list(lhotse.CutSet.from_shar(fields=shar_fields(shar_dir, codes)))
    assert len(cuts) == len(IDS)
    for cut in cuts:
        toks = cut.codes.load()
        np.testing.assert_array_equal(toks, reference[cut.id.rsplit("-", 1)[0]])
        np.testing.assert_array_equal(cut.load_codes(), toks)
        assert cut.codes.frame_shift == pytest.approx(1 / 50)
    # The same command again writes nothing; a token folder is there for Python.
    stamps = {p.name: p.stat().st_mtime_ns for p in codes.glob("codes.*.tar")}
    assert run(*args, "-q") == 0
    assert stamps == {p.name: p.stat().st_mtime_ns for p in codes.glob("codes.*.tar")}
    assert len(TokenDataset(codes)) == len(IDS)


def test_shar_output_is_refused_where_it_would_harm(tmp_path, shar_dir, model, capsys):
    before = snapshot(shar_dir)
    for out in (shar_dir, shar_dir / "codes"):
        args = ("tokenize", shar_dir, "-o", out, "-m", model, "--format", "shar")
        assert run(*args) == 1
        assert "from_shar(in_dir" in capsys.readouterr().err
    assert snapshot(shar_dir) == before
    # Field files someone else wrote are never touched, even with --force.
    other = tmp_path / "nemo_codes"
    other.mkdir()
    (other / "codes.000000.tar").write_bytes(b"theirs")
    for force in ((), ("--force",)):
        args = ("tokenize", shar_dir, "-o", other, "-m", model, "--format", "shar")
        assert run(*args, *force) == 1
        assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["codes.000000.tar"]
    assert (other / "codes.000000.tar").read_bytes() == b"theirs"


def test_shar_force_replaces_only_its_own_files(tmp_path, shar_dir, model, golden_dir):
    codes = tmp_path / "codes"
    args = ("tokenize", shar_dir, "-o", codes, "--format", "shar", "-q")
    assert run(*args, "-m", model) == 0
    (codes / "notes.txt").write_text("mine")
    other = str(golden_dir / "causal_vocos_25hz_postnorm")
    assert run(*args, "-m", other) == 1  # another model's field: refused
    assert run(*args, "-m", other, "--force") == 0
    assert (codes / "notes.txt").read_text() == "mine"
    cut = next(iter(lhotse.CutSet.from_shar(fields=shar_fields(shar_dir, codes))))
    assert cut.codes.frame_shift == pytest.approx(1 / 25)


def test_bad_item_names_shard_and_key_and_the_run_goes_on(
    tmp_path, tar_dir, model, reference, capsys
):
    shard = tmp_path / "bad-000000.tar"
    with wds.TarWriter(str(shard)) as writer:
        writer.write({"__key__": IDS[0], "flac": (AUDIO / CLIPS[0]).read_bytes()})
        writer.write({"__key__": "broken", "flac": b"not audio at all"})
        writer.write({"__key__": IDS[1], "flac": (AUDIO / CLIPS[1]).read_bytes()})
    out = tmp_path / "toks"
    assert run("tokenize", shard, "-o", out, "-m", model, "-q") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad-000000.tar [broken]" in err[0], err
    assert TokenDataset(out).ids == [IDS[0], IDS[1]]
    assert_tokens_equal(tokens_by_source_id(out), {i: reference[i] for i in IDS[:2]})
    # A shard cut short: what came before its break is kept, the break is one line.
    cut = tmp_path / "cut-000001.tar"
    data = (tar_dir / "shard-000001.tar").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    both = f"{tmp_path}/{{bad-000000,cut-000001}}.tar"
    assert run("tokenize", both, "-o", tmp_path / "two", "-m", model, "-q") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "[broken]" in err[0], err
    assert "cut-000001.tar (shard, stopped after item" in err[1]
    kept = TokenDataset(tmp_path / "two").ids
    assert kept[:2] == [IDS[0], IDS[1]] and set(kept[2:]) < set(IDS[4:])


def test_long_items_take_the_long_path_with_the_same_tokens(
    tmp_path, parquet_dir, tar_dir, files_manifest, model, monkeypatch
):
    """Items over --long-seconds are read piece by piece from their bytes: the tokens
    are those of the same files through the same path."""
    from focalcodec.pipeline import tokenize

    long_names: list[str] = []
    encode_long = tokenize.TokenizeJob.encode_long

    def counting(self, source, name, show):
        long_names.append(name)
        return encode_long(self, source, name, show)

    monkeypatch.setattr(tokenize.TokenizeJob, "encode_long", counting)
    outs = {}
    sources = {"files": files_manifest, "parquet": parquet_dir, "wds": tar_dir}
    for name, source in sources.items():
        outs[name] = tmp_path / name
        args = ("tokenize", source, "-o", outs[name], "-m", model, "-q")
        assert run(*args, "--long-seconds", "2.5") == 0
    # 3.1 s and 5.5 s are over 2.5 s: each once per source.
    assert sum("agent-newlocation" in n for n in long_names) == 3
    assert sum("p257_003" in n for n in long_names) == 3
    assert "shard-000001.tar [p257_003]" in long_names
    files = tokens_by_source_id(outs["files"])
    unprefixed = tokens_by_source_id(outs["parquet"])
    assert_tokens_equal(unprefixed, files, key=lambda i: i.removeprefix("test-"))
    assert_tokens_equal(tokens_by_source_id(outs["wds"]), files)


def test_python_road_for_datasets_users(parquet_dir, golden_dir, reference):
    from focalcodec import FocalCodec
    from focalcodec.pipeline.sources import tokenize_dataset

    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    files = str(parquet_dir / "data" / "train-*.parquet")
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    mapped = tokenize_dataset(ds, codec, batch_size=3)
    for row in mapped:
        assert row["tokens"] == reference[row["id"]].tolist()
    streamed = datasets.load_dataset(
        "parquet", data_files=files, split="train", streaming=True
    )
    for row in tokenize_dataset(streamed, codec, batch_size=2):
        np.testing.assert_array_equal(row["tokens"], reference[row["id"]])


def test_streaming_datasets_source(tmp_path, parquet_dir, model, reference, golden_dir):
    """The Hub's road (``datasets`` streaming, its shards), on local Parquet files."""
    from focalcodec import FocalCodec
    from focalcodec.pipeline.sources.engine import tokenize_source
    from focalcodec.pipeline.sources.hf import HubSource
    from focalcodec.pipeline.tokenize import TokenizeOptions
    from focalcodec.runtime import setup

    files = sorted(str(p) for p in (parquet_dir / "data").glob("train-*.parquet"))
    source = HubSource("parquet", split="train", data_files=files)
    assert [s.name for s in source.shards()] == [
        "train/00000-of-00002",
        "train/00001-of-00002",
    ]
    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    out = tmp_path / "toks"
    report = tokenize_source(
        source, out, codec, TokenizeOptions(workers=0), setup("cpu")
    )
    assert report.items == len(IDS) and not report.failed
    assert_tokens_equal(tokens_by_source_id(out), reference)
    kinds = {"speaker": "string", "chapter": "int64", "split": "string"}
    assert source.column_types() == kinds  # from the features, not the rows


def test_splits_follow_the_datasets_naming(tmp_path):
    """Splits as ``datasets`` infers them from names, and a split folder by its name."""
    small = audio_dataset().select(range(1))
    for split in ("train.100", "train.360", "test"):
        (tmp_path / "clean" / split).mkdir(parents=True)
        small.to_parquet(tmp_path / "clean" / split / "0000.parquet")
    shards = open_source(str(tmp_path / "clean")).shards()
    assert [(s.name, s.part) for s in shards] == [
        ("train.100/0000.parquet", "train"),
        ("train.360/0000.parquet", "train"),
        ("test/0000.parquet", "test"),
    ]
    only = open_source(str(tmp_path / "clean"), split="train.100").shards()
    assert [(s.name, s.part) for s in only] == [("train.100/0000.parquet", "train.100")]
    with pytest.raises(DataError, match="no split 'dev'"):
        open_source(str(tmp_path / "clean"), split="dev")
    with pytest.raises(UsageError, match="--split: not used by a wds source"):
        open_source(str(tmp_path / "shards.tar"), "wds", split="x")


def test_mp3_members_as_emilia_ships_them(tmp_path, model, capsys):
    """Emilia's layout: KEY.mp3 + KEY.json; the tokens are those of the same mp3 file."""
    import soundfile as sf

    mp3 = tmp_path / "clip.mp3"
    sig, rate = sf.read(AUDIO / CLIPS[1], dtype="float32")
    sf.write(mp3, sig, rate, format="MP3")
    meta = {"text": "hola", "speaker": "es_1", "language": "es", "duration": 2.05}
    with wds.TarWriter(str(tmp_path / "ES-B000000.tar")) as writer:
        writer.write({"__key__": "ES_B00000_S00000_W000000", "mp3": mp3.read_bytes(),
                      "json": meta})  # fmt: skip
    out, ref = tmp_path / "toks", tmp_path / "ref"
    assert (
        run("tokenize", tmp_path / "ES-B000000.tar", "-o", out, "-m", model, "-q") == 0
    )
    assert (
        run(
            "tokenize", tmp_path, "-o", ref, "-m", model, "-q", "--source-kind", "files"
        )
        == 0
    )
    item, solo = TokenDataset(out)[0], TokenDataset(ref)[0]
    np.testing.assert_array_equal(item["tokens"], solo["tokens"])
    assert item["text"] == "hola" and item["source_duration"] == 2.05
    # The shar format is for Shar folders only, refused before any work.
    args = ("tokenize", tmp_path / "ES-B000000.tar", "-o", tmp_path / "x", "-m", model)
    assert run(*args, "--format", "shar") == 2
    assert "Lhotse Shar folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_tar_cut_between_members_is_not_taken_for_a_short_one(tmp_path, tar_dir):
    """tarfile reads an archive cut at a member boundary as a shorter archive."""
    import tarfile

    data = (tar_dir / "shard-000000.tar").read_bytes()
    with tarfile.open(tar_dir / "shard-000000.tar") as tar:
        third_key = tar.getmembers()[2 * 3]  # flac, json, txt per key
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: third_key.offset])
    source = open_source(str(cut))
    out = list(source.read(source.shards()))
    assert [o.id for o in out[:-1]] == IDS[:2]
    assert "truncated" in str(out[-1].error) and out[-1].after == IDS[1]
