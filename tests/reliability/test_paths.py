"""Outputs are decided on resolved paths: inputs are never written, whatever the spelling.

Property-based tests draw spellings of the same file or folder (``.``, ``..`` through
missing and existing folders, symlinked folders, symlinks and hard links to the file,
absolute and relative, doubled slashes) and check that :mod:`focalcodec.files.atomic` and
the batch planner refuse to write an input (even with ``force``), exclude an output folder
inside an input folder from the scan, and leave the file tree exactly as it was. The last
tests replay the reported cases through the command line.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.cli.batch import plan
from focalcodec.errors import OutputExistsError, UsageError
from focalcodec.files.atomic import atomic_write, check_output, resolve
from focalcodec.pipeline.compress import compress_to_file

MODEL = "causal_wavenext_50hz"
PRECIOUS = b"precious bytes: an input"


@contextmanager
def cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """in/a.wav, in/sub/b.wav, in/hard.wav (hard link to a.wav), in/sym.wav (symlink to
    a.wav), in/out/old.wav (a previous output), link_in -> in, other/ (empty)."""
    root = tmp_path_factory.mktemp("world")
    (root / "in" / "sub").mkdir(parents=True)
    (root / "in" / "out").mkdir()
    (root / "other").mkdir()
    (root / "in" / "a.wav").write_bytes(PRECIOUS)
    (root / "in" / "sub" / "b.wav").write_bytes(PRECIOUS)
    (root / "in" / "out" / "old.wav").write_bytes(b"old output")
    os.link(root / "in" / "a.wav", root / "in" / "hard.wav")
    (root / "in" / "sym.wav").symlink_to("a.wav")
    (root / "link_in").symlink_to("in")
    return root


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root``: symlink targets, file bytes, folders."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                out[key] = ("link", os.readlink(path))
            elif path.is_dir():
                out[key] = "dir"
            else:
                out[key] = path.read_bytes()
    return out


# Spellings of the folder "in" and of files in it, relative to the world's root.
IN_DIRS = [
    "in",
    "./in",
    "in/.",
    "link_in",
    "./link_in/",
    "other/../in",
    "nosuch/../in",
    "nosuch/deeper/../../in",
    "in/sub/..",
    "link_in/sub/..",
    "in//",
]
# Input folders must exist as spelled (the system cannot open nosuch/../in).
EXISTING_IN_DIRS = [d for d in IN_DIRS if "nosuch" not in d]
A_NAMES = ["a.wav", "./a.wav", "hard.wav", "sym.wav", "nosuch/../a.wav", "sub/../a.wav"]


@st.composite
def spelling_of_a(draw, existing: bool = False) -> str:
    """A spelling of in/a.wav (the same file by path, hard link or symlink); with
    ``existing``, only spellings the system can open (no missing folder on the way)."""
    folders = EXISTING_IN_DIRS if existing else IN_DIRS
    names = [n for n in A_NAMES if not existing or "nosuch" not in n]
    folder = draw(st.sampled_from(folders)).rstrip("/")
    name = draw(st.sampled_from(names))
    text = f"{folder}/{name}"
    if draw(st.booleans()):
        text = text.replace("/", "//", 1)
    return text


def absolute(root: Path, text: str, make_absolute: bool) -> str:
    return str(root / text) if make_absolute else text


@settings(max_examples=200, deadline=None)
@given(
    out=spelling_of_a(),
    src=spelling_of_a(),
    force=st.booleans(),
    abs_out=st.booleans(),
    abs_src=st.booleans(),
)
def test_an_input_is_never_an_output(world, out, src, force, abs_out, abs_src):
    before = snapshot(world)
    with cwd(world):
        out_text = absolute(world, out, abs_out)
        inputs = [absolute(world, src, abs_src)]
        with pytest.raises(OutputExistsError, match="its own input"):
            check_output(out_text, force=force, inputs=inputs)
        with pytest.raises(OutputExistsError):
            with atomic_write(out_text, force=force, inputs=inputs) as fileobj:
                fileobj.write(b"clobbered")
    # Nothing changed: no bytes, no new folder (not even "nosuch"), no temp file.
    assert snapshot(world) == before


@settings(max_examples=100, deadline=None)
@given(out=spelling_of_a(), abs_out=st.booleans())
def test_existing_output_without_force_is_kept(world, out, abs_out):
    """Without inputs given, any spelling of an existing file is still refused."""
    before = snapshot(world)
    with cwd(world):
        with pytest.raises(OutputExistsError, match="exists"):
            with atomic_write(absolute(world, out, abs_out)) as fileobj:
                fileobj.write(b"clobbered")
    assert snapshot(world) == before


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    src=st.sampled_from(EXISTING_IN_DIRS),
    out=st.sampled_from(IN_DIRS),
    tail=st.sampled_from(["out", "out/", "./out", "sub/../out"]),
    force=st.booleans(),
)
def test_output_folder_inside_the_input_is_not_scanned(world, src, out, tail, force):
    """resynth DIR -o DIR/out: files of DIR/out (earlier outputs) are never inputs."""
    out_dir = f"{out.rstrip('/')}/{tail}"
    with cwd(world):
        items = plan([src], out_dir, (".wav",), ".wav", force=force)
    out_root = world / "in" / "out"
    sources = [resolve(world / i.src) for i in items if i.src is not None]
    assert sources, items
    assert not any(out_root in p.parents for p in sources)
    # Every planned output lies in the output folder, none is an input.
    for item in items:
        assert item.error is None or "exists" in item.error, item
        assert out_root in resolve(world / item.dst).parents


@settings(max_examples=100, deadline=None)
@given(src=st.sampled_from(EXISTING_IN_DIRS), out=st.sampled_from(IN_DIRS))
def test_output_folder_equal_to_the_input_is_refused(world, src, out):
    with cwd(world), pytest.raises(UsageError, match="input folder"):
        plan([src], out, (".wav",), ".wav", force=True)


@settings(max_examples=100, deadline=None)
@given(
    srcs=st.lists(spelling_of_a(existing=True), min_size=1, max_size=3),
    out=st.sampled_from(IN_DIRS),
)
def test_batch_outputs_onto_inputs_are_errors_even_with_force(world, srcs, out):
    """Files written back into their own folder with the same suffix: every item is
    refused up front, whatever the spelling, --force or not."""
    with cwd(world):
        items = plan(srcs, out + "/", (".wav",), ".wav", force=True)
    for item in items:
        assert item.error, item
        assert "is the input" in item.error or "also the output" in item.error


# ------------------------------------------------------------------------ CLI replays


@pytest.fixture
def model(golden_dir: Path) -> str:
    return str(golden_dir / MODEL)


@pytest.fixture
def clip(data_dir: Path, tmp_path: Path) -> Path:
    src = data_dir / "audio" / "multilingual" / "it" / "agent-loggedoff.flac"
    return Path(shutil.copy(src, tmp_path / "a.flac"))


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_resynth_through_a_missing_folder_keeps_the_input(
    clip, model, tmp_path, monkeypatch, force, capsys
):
    """The reported case: -o nosuch/../a.flac replaced the input and exited 0."""
    monkeypatch.chdir(tmp_path)
    before = clip.read_bytes()
    assert run("resynth", "a.flac", "-o", "nosuch/../a.flac", "-m", model, *force) == 1
    assert "is the input" in capsys.readouterr().err
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac"]


def test_save_bank_never_replaces_a_reference_or_source(clip, model, tmp_path, capsys):
    ref = Path(shutil.copy(clip, tmp_path / "ref.flac"))
    before = ref.read_bytes()
    for target in (ref, clip, tmp_path / "link_ref.flac"):
        if target.name == "link_ref.flac":
            os.link(ref, target)  # a hard link is the reference too
        args = ("vc", clip, "-r", ref, "--save-bank", target, "--force")
        assert run(*args, "-o", tmp_path / "out.wav", "-m", model) == 1
        assert "its own input" in capsys.readouterr().err
    assert ref.read_bytes() == before and clip.read_bytes() == before
    assert not (tmp_path / "out.wav").exists()


def test_rerun_into_output_inside_input_does_not_nest(data_dir, tmp_path, model):
    """resynth DIR -o DIR/out, twice (also through a symlink to DIR): no DIR/out/out."""
    tree = tmp_path / "DIR"
    shutil.copytree(data_dir / "audio" / "multilingual" / "it", tree)
    (tmp_path / "alias").symlink_to(tree)
    names = sorted(p.with_suffix(".wav").name for p in tree.glob("*.flac"))
    for out in (tree / "out", tmp_path / "alias" / "out"):
        assert run("resynth", tree, "-o", out, "-m", model, "-q", "--force") == 0
    assert sorted(p.name for p in (tree / "out").iterdir()) == names
    assert run("resynth", tree, "-o", tree, "-m", model, "-q", "--force") == 2


def test_python_api_resolves_before_creating_folders(golden_dir, tmp_path, monkeypatch):
    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.fcz").write_bytes(b"keep")
    sig = np.zeros(3200, dtype=np.float32)
    with pytest.raises(OutputExistsError, match="exists"):
        compress_to_file(sig, 16000, codec, "nosuch/../x.fcz")
    assert (tmp_path / "x.fcz").read_bytes() == b"keep"
    assert not (tmp_path / "nosuch").exists()
    compress_to_file(sig, 16000, codec, "new/../y.fcz")
    assert (tmp_path / "y.fcz").stat().st_size > 0


def test_symlink_loops_in_an_input_folder_end(tmp_path, data_dir):
    tree = tmp_path / "in"
    tree.mkdir()
    clip = data_dir / "audio" / "multilingual" / "it" / "agent-loggedoff.flac"
    sf.write(tree / "x.wav", *sf.read(clip))
    (tree / "loop").symlink_to(tree)  # in/loop/loop/loop/... without end
    items = plan([str(tree)], str(tmp_path / "out"), (".wav",), ".wav", force=False)
    # The link up is reported (one error line) and not followed; x.wav is encoded once.
    assert [i.src.name for i in items] == ["loop", "x.wav"]
    assert "symlink up to" in items[0].error and items[1].error is None
