"""Token folders: nothing of the user's deleted, nothing outside read, nothing edited
by hand served, no two checkpoints mixed.

``tokenize -o DIR --force`` on a folder that was not a token folder deleted the user's
own ``meta.json``, ``index.jsonl``, ``tokens.npy`` and ``offsets.npy``; an index entry
``"file": "../x.npy"`` (or an absolute path) was followed and served; negative or
out-of-range ``start``, ``num_tokens`` and token ids were served; a folder resumed with
retrained weights of the same architecture mixed two checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.errors import FormatError, ModelMismatchError
from focalcodec.identity import weights_hash
from focalcodec.tokens.dataset import (
    TokenDataset,
    open_folder,
    token_meta,
    write_tokens,
)

META = {"codebook_size": 1024, "model_name": "m", "config_hash": "ab", "token_rate": 50}
MODEL = "noncausal_vocos_50hz"


def items(n: int = 4, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"id": f"u{i}", "tokens": rng.integers(0, 1024, size=5 + i)} for i in range(n)
    ]


def users_folder(folder: Path) -> dict[str, bytes]:
    """A folder of the user's own files that happen to have our names."""
    folder.mkdir(parents=True)
    files = {
        "meta.json": b'{"experiment": "mine", "kind": "notes"}\n',
        "index.jsonl": b'{"row": 1}\n',
        "tokens.npy": b"my own array",
        "offsets.npy": b"my own offsets",
        "notes.txt": b"keep me",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def unchanged(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / n).read_bytes() == d for n, d in files.items())


def test_force_never_deletes_a_users_files(tmp_path):
    folder = tmp_path / "mine"
    files = users_folder(folder)
    for force in (False, True):
        with pytest.raises(FormatError, match="not a focalcodec token folder"):
            write_tokens(folder, items(), META, force=force)
        assert unchanged(folder, files)


def test_tokenize_force_on_a_foreign_folder_through_the_cli(
    tmp_path, golden_dir, capsys
):
    audio = tmp_path / "audio"
    audio.mkdir()
    import soundfile as sf

    sf.write(
        audio / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(8000), 16000
    )
    folder = tmp_path / "mine"
    files = users_folder(folder)
    args = ["tokenize", str(audio), "-o", str(folder), "-m", str(golden_dir / MODEL)]
    assert main([*args, "--force", "-q"]) != 0
    assert "not a focalcodec token folder" in capsys.readouterr().err
    assert unchanged(folder, files)


def test_force_replaces_only_its_own_files_and_never_a_folder(tmp_path):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    (folder / "notes.txt").write_text("mine")
    (folder / "part-r00000-00099.npy").mkdir()  # a folder with one of our names
    ds = write_tokens(folder, items(2, seed=1), META, force=True)
    assert len(ds) == 2
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "part-r00000-00099.npy").is_dir()


def test_a_folder_with_unrelated_files_only_can_be_written(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "README").write_text("what this is")
    assert len(write_tokens(folder, items(), META)) == 4
    assert (folder / "README").read_text() == "what this is"


def edit_index(folder: Path, **changes) -> None:
    path = folder / "index.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0].update(changes)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("name", ["../x.npy", "/etc/passwd", "sub/tokens.npy", 7])
def test_index_entries_never_leave_the_folder(tmp_path, name):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    outside = tmp_path / "x.npy"
    np.save(outside, np.arange(100, dtype=np.uint16))
    edit_index(folder, file=name)
    with pytest.raises(FormatError, match="not a file of this token folder"):
        TokenDataset(folder)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"start": -5}, "start=-5"),
        ({"num_tokens": -1}, "num_tokens=-1"),
        ({"num_tokens": 2.5}, "num_tokens=2.5"),
        ({"start": True}, "start=True"),
        ({"start": 10**9}, "beyond its"),
        ({"num_tokens": 10**6}, "beyond its"),
        ({"id": 5}, "no string id"),
    ],
)
def test_hand_edited_items_are_refused_on_opening(tmp_path, changes, message):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    edit_index(folder, **changes)
    with pytest.raises(FormatError, match=message.replace(".", r"\.")):
        TokenDataset(folder)


def test_offsets_that_lie_are_refused(tmp_path):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    offsets = np.load(folder / "offsets.npy")
    offsets[1], offsets[2] = offsets[2], offsets[1]  # decreasing
    np.save(folder / "offsets.npy", offsets)
    with pytest.raises(FormatError, match="offsets.npy: does not match"):
        TokenDataset(folder)


def test_token_ids_outside_the_codebook_are_never_served(tmp_path):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    tokens = np.load(folder / "tokens.npy")
    tokens[0] = 5000  # beyond the 1024-entry codebook, within uint16
    # Same size, so only the CRC of a verified open sees the edit.
    path = folder / "tokens.npy"
    head = path.read_bytes()[: path.stat().st_size - tokens.nbytes]
    path.write_bytes(head + tokens.tobytes())
    ds = TokenDataset(folder)
    with pytest.raises(FormatError, match=r"outside the codebook \[0, 1024\)"):
        ds[0]
    assert len(ds[1]["tokens"]) == 6  # other items are still served


def test_meta_with_an_impossible_codebook_is_refused(tmp_path):
    folder = tmp_path / "t"
    write_tokens(folder, items(), META)
    meta = json.loads((folder / "meta.json").read_text())
    meta["codebook_size"] = -3
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="not a codebook"):
        TokenDataset(folder)


def test_other_weights_of_the_same_architecture_are_refused(tmp_path, golden_dir):
    """Retrained weights keep the config hash; the weights hash tells them apart."""
    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    other = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    with torch.no_grad():
        next(other.decoder.parameters()).mul_(1.5)
    assert token_meta(codec)["config_hash"] == token_meta(other)["config_hash"]
    assert weights_hash(codec) != weights_hash(other)
    assert weights_hash(codec) == weights_hash(codec)  # stable, and kept on the codec
    folder = tmp_path / "t"
    write_tokens(folder, items(), codec)
    with pytest.raises(ModelMismatchError, match="--force"):
        open_folder(folder, token_meta(other))
    with pytest.raises(ModelMismatchError, match="weights"):
        TokenDataset(folder).decode(0, other)
    assert TokenDataset(folder).decode(0, codec).ndim == 1
