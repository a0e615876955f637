"""The one road: the command line and the Python pipelines write the same bytes.

``focalcodec encode / decode / resynth / vc`` only parse arguments and call
:mod:`focalcodec.pipeline.files`; these tests run both ways on short inputs (one model
call) and long ones (piece by piece: a causal model's stream, a non-causal model's
windows), plain and entropy-coded, and compare the files byte for byte.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import soundfile as sf

from focalcodec.errors import AudioError, OutputExistsError
from focalcodec.fcz import bitstream
from focalcodec.pipeline import longaudio
from focalcodec.pipeline.banks import matching_set_from_files, save_bank
from focalcodec.pipeline.compress import coder_for, compress
from focalcodec.pipeline.files import (
    Job,
    convert_file,
    decode_file,
    encode_file,
    encode_files,
    resynth_file,
)
from focalcodec.pipeline.models import load_codec
from support import AUDIO, CLEAN, NOISY, run_cli, speech_file

MODELS = ["causal_wavenext_50hz", "noncausal_vocos_50hz"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A short clip (2.1 s) and a long one (7 s at 48 kHz, long once the whole-input
    limit is lowered to 3 s)."""
    folder = tmp_path_factory.mktemp("inputs")
    return {
        "short": AUDIO / CLEAN,
        "long": speech_file(folder / "long.wav", 7.0, 48000),
    }


@pytest.fixture
def short_limit(monkeypatch):
    """Inputs over 3 s take the piece-by-piece road (windows of 3 s, 0.5 s context)."""
    monkeypatch.setattr(longaudio, "WHOLE_SECONDS", 3.0)
    monkeypatch.setattr(longaudio, "WINDOW_SECONDS", 3.0)
    monkeypatch.setattr(longaudio, "OVERLAP_SECONDS", 0.5)


@pytest.mark.parametrize("case", MODELS)
@pytest.mark.parametrize("length", ["short", "long"])
@pytest.mark.parametrize("entropy", ["none", "adaptive"])
def test_cli_and_python_write_the_same_fcz(
    tmp_path, golden_dir, inputs, short_limit, case, length, entropy
):
    model = golden_dir / case
    source = inputs[length]
    cli, api = tmp_path / "cli.fcz", tmp_path / "api.fcz"
    assert (
        run_cli("encode", source, "-o", cli, "-m", model, "--entropy", entropy, "-q")
        == 0
    )
    codec = load_codec(model, "cpu")
    report = encode_file(source, api, codec, entropy=entropy)
    assert cli.read_bytes() == api.read_bytes()
    assert report.size == api.stat().st_size
    container = _container(api.read_bytes())
    assert report.num_tokens == len(container.toks) > 0
    assert report.num_samples == container.num_samples
    packets = bitstream.Reader(io.BytesIO(api.read_bytes())).skim().packets
    if length == "long" and entropy == "none" and codec.causal:
        assert packets > 2  # written packet by packet as the stream gives tokens
    # Decoding: the CLI and the Python road give the same audio file.
    wav_cli, wav_api = tmp_path / "cli.wav", tmp_path / "api.wav"
    assert run_cli("decode", api, "-o", wav_cli, "-m", model, "-q") == 0
    decode_file(api, wav_api, codec)
    assert wav_cli.read_bytes() == wav_api.read_bytes()
    sig, rate = sf.read(wav_api)
    assert rate == codec.sample_rate_output
    assert len(sig) == codec.output_length(container.num_samples)


@pytest.mark.parametrize("case", MODELS)
def test_short_file_bytes_equal_the_in_memory_api(tmp_path, golden_dir, inputs, case):
    codec = load_codec(golden_dir / case, "cpu")
    sig, rate = sf.read(inputs["short"], dtype="float32")
    for entropy in (None, "adaptive"):
        out = tmp_path / f"{entropy}.fcz"
        encode_file(inputs["short"], out, codec, entropy=entropy)
        assert out.read_bytes() == compress(sig, rate, codec, entropy)


@pytest.mark.parametrize("length", ["short", "long"])
def test_cli_and_python_resynthesise_and_convert_alike(
    tmp_path, golden_dir, inputs, short_limit, length
):
    model = golden_dir / "causal_wavenext_50hz"
    codec = load_codec(model, "cpu")
    source = inputs[length]
    cli, api = tmp_path / "cli.flac", tmp_path / "api.flac"
    args = ("-m", model, "-q", "--sample-rate", "16000")
    assert run_cli("resynth", source, "-o", cli, *args) == 0
    resynth_file(source, api, codec, sample_rate=16000)
    assert cli.read_bytes() == api.read_bytes()
    assert sf.info(api).samplerate == 16000
    # Voice conversion towards a bank built from another recording.
    reference = AUDIO / NOISY
    bank = matching_set_from_files(codec, [reference])
    save_bank(tmp_path / "bank.safetensors", bank, codec)
    vc_cli, vc_api = tmp_path / "vc_cli.wav", tmp_path / "vc_api.wav"
    vc = ("vc", source, "-o", vc_cli, "--bank", tmp_path / "bank.safetensors")
    assert run_cli(*vc, "-m", model, "-q") == 0
    convert_file(source, vc_api, codec, bank, topk=4)
    assert vc_cli.read_bytes() == vc_api.read_bytes()
    plain = tmp_path / "plain.wav"
    resynth_file(source, plain, codec, force=True)
    assert plain.read_bytes() != vc_api.read_bytes()  # the bank changed the voice


def test_batched_short_files_equal_solo_files(tmp_path, golden_dir, inputs):
    codec = load_codec(golden_dir / "noncausal_vocos_50hz", "cpu")
    clip = inputs["short"]
    jobs = [Job(clip, tmp_path / f"{i}.fcz") for i in range(3)]
    jobs.append(Job(tmp_path / "missing.wav", tmp_path / "missing.fcz"))
    results = encode_files(jobs, codec)
    assert isinstance(results[3], AudioError) and "no such file" in str(results[3])
    solo = tmp_path / "solo.fcz"
    encode_file(clip, solo, codec)
    for i in range(3):
        assert (tmp_path / f"{i}.fcz").read_bytes() == solo.read_bytes()
        assert results[i].name == str(clip)


def test_streams_in_and_out(tmp_path, golden_dir, inputs):
    """A pipe-like source (no seeking) is spooled; a pipe-like destination gets the
    bytes once complete; both equal the files' bytes."""
    codec = load_codec(golden_dir / "causal_wavenext_50hz", "cpu")
    encode_file(inputs["short"], tmp_path / "file.fcz", codec)
    source = _Pipe(inputs["short"].read_bytes())
    dest = _Pipe()
    report = encode_file(source, dest, codec, name="<stdin>")
    assert report.name == "<stdin>"
    assert dest.written() == (tmp_path / "file.fcz").read_bytes()


def test_outputs_are_decided_before_writing(tmp_path, golden_dir, inputs):
    codec = load_codec(golden_dir / "causal_wavenext_50hz", "cpu")
    out = tmp_path / "x.fcz"
    encode_file(inputs["short"], out, codec)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        encode_file(inputs["short"], out, codec)
    with pytest.raises(OutputExistsError):
        decode_file(out, out, codec, force=True, format="wav")  # never the input
    assert out.read_bytes() == before
    with pytest.raises(AudioError, match="mp3 output cannot be written at 96000 Hz"):
        resynth_file(inputs["short"], tmp_path / "x.mp3", codec, sample_rate=96000)
    assert not (tmp_path / "x.mp3").exists()


def test_clipping_is_reported_and_warned(tmp_path, golden_dir):
    codec = load_codec(golden_dir / "causal_wavenext_50hz", "cpu")
    hot = tmp_path / "hot.wav"
    sf.write(hot, np.clip(np.sin(np.arange(16000) / 5.0) * 3.0, -1, 1), 16000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = encode_file(hot, tmp_path / "hot.fcz", codec)
    assert report.clipping and "clipped" in report.clipping
    assert any("hot.wav" in str(w.message) for w in seen)


def test_progress_reaches_one(tmp_path, golden_dir, inputs, short_limit):
    codec = load_codec(golden_dir / "noncausal_vocos_50hz", "cpu")
    seen: list[float] = []
    encode_file(inputs["long"], tmp_path / "x.fcz", codec, progress=seen.append)
    assert len(seen) > 1 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def _container(data: bytes) -> bitstream.Container:
    reader = bitstream.Reader(io.BytesIO(data))
    reader.attach(coder_for(reader.header))
    return reader.read_all()


class _Pipe(io.RawIOBase):
    """A binary stream that cannot seek, like stdin or stdout."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = io.BytesIO(data)
        self._out = io.BytesIO()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def write(self, data) -> int:
        return self._out.write(data)

    def written(self) -> bytes:
        return self._out.getvalue()
