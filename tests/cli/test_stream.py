"""``focalcodec stream``: file and (faked) device sources and sinks, stats, errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.deploy.fast import optimize
from focalcodec.streaming.session import StreamingSession
from support import load_golden, max_abs, one_line_error, snr_db

CASE = "causal_wavenext_50hz"  # 16 kHz in, 24 kHz out, 80 ms blocks


@pytest.fixture(scope="module")
def model_dir(golden_dir: Path) -> Path:
    return golden_dir / CASE


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return (load_golden(CASE).io["input.sig"][0, :10000] * 0.5).numpy()


@pytest.fixture
def wav(tmp_path: Path, speech: np.ndarray) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, speech, 16000, subtype="FLOAT")
    return path


def _offline(model_dir: Path, sig: np.ndarray) -> np.ndarray:
    codec = FocalCodec.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = codec.sig_to_sig(torch.from_numpy(sig)[None])[0].numpy()
    return np.clip(out, -1, 1)


def test_file_to_file_equals_offline(model_dir, wav, speech, tmp_path, capsys):
    out, stats = tmp_path / "out.wav", tmp_path / "stats.json"
    code = main(
        ["stream", str(wav), "-o", str(out), "-m", str(model_dir)]
        + ["--stats", str(stats)]
    )
    assert code == 0
    data, rate = sf.read(out, dtype="float32")
    assert rate == 24000 and len(data) == len(speech) * 3 // 2
    # 16-bit output: quantisation error below 1/32768.
    np.testing.assert_allclose(data, _offline(model_dir, speech), atol=1e-4)
    lines = capsys.readouterr().out.splitlines()
    blocks = -(-len(speech) // 1280)
    assert sum(line.startswith("block ") for line in lines) == blocks
    assert "real-time factor" in lines[-1] and "p99" in lines[-1]
    record = json.loads(stats.read_text())
    assert len(record["compute_ms"]) == blocks and record["block_ms"] == 80.0
    assert record["audio_seconds"] == pytest.approx(len(speech) / 16000)
    assert not list(tmp_path.glob(".*.part"))


def test_voice_conversion_and_quiet(model_dir, wav, tmp_path, capsys):
    out = tmp_path / "vc.flac"
    code = main(
        ["stream", str(wav), "-o", str(out), "-m", str(model_dir), "-q"]
        + ["--ref", str(wav), "--duration", "0.3"]
    )
    assert code == 0
    data, rate = sf.read(out)
    assert rate == 24000 and len(data) == int(0.3 * 16000) * 3 // 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("4 blocks of 80 ms")


def test_fast_int8_streams_close_to_exact(model_dir, wav, speech, tmp_path, capsys):
    exact, fast = tmp_path / "exact.wav", tmp_path / "int8.wav"
    assert main(["stream", str(wav), "-o", str(exact), "-m", str(model_dir), "-q"]) == 0
    argv = ["stream", str(wav), "-o", str(fast), "-m", str(model_dir), "-q"]
    assert main([*argv, "--fast", "int8"]) == 0
    ref, _ = sf.read(exact, dtype="float32")
    out, rate = sf.read(fast, dtype="float32")
    assert rate == 24000 and out.shape == ref.shape
    assert not np.array_equal(out, ref)  # int8 changes some tokens and the audio
    # The command is the int8 model of focalcodec.deploy.fast in a session, written as
    # 16-bit PCM: equal to one quantisation step.
    codec = optimize(FocalCodec.from_pretrained(model_dir).eval(), "int8")
    with torch.no_grad(), StreamingSession(codec) as stream:
        x = torch.from_numpy(speech)[None]
        api = torch.cat([stream.process(x), stream.flush().sig], 1)[0].numpy()
    assert max_abs(out, np.clip(api, -1, 1)) <= 2**-15 + 1e-6
    # Against offline exact audio: 21.2 dB SNR measured on this input (docs/performance.md
    # has 19.6 dB for this model's round trip on 8 real-speech files).
    assert snr_db(_offline(model_dir, speech), out) >= 20.0


def test_unknown_fast_mode_is_one_line(model_dir, wav, capsys):
    assert main(["stream", str(wav), "-m", str(model_dir), "--fast", "turbo"]) != 0
    assert "turbo" in one_line_error(capsys)


@pytest.mark.parametrize("option", ["-o", "--stats"])
def test_existing_output_is_kept(model_dir, wav, tmp_path, capsys, option):
    out = tmp_path / "out.wav"
    out.write_bytes(b"keep me")
    assert main(["stream", str(wav), option, str(out), "-m", str(model_dir)]) == 2
    assert out.read_bytes() == b"keep me"
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "exactly one source"),
        (["IN", "--mic"], "exactly one source"),
        (["IN", "--ref", "a.wav", "--bank", "b.safetensors"], "use one"),
        (["IN", "--duration", "-1"], "positive"),
        (["IN", "-o", "IN"], "overwrite the input"),
    ],
)
def test_argument_errors(wav, argv, message, capsys):
    argv = [str(wav) if a == "IN" else a for a in argv]
    assert main(["stream", *argv]) == 2
    assert message in one_line_error(capsys)


def test_non_causal_model_is_one_line_error(golden_dir, wav, capsys):
    code = main(["stream", str(wav), "-m", str(golden_dir / "noncausal_vocos_50hz")])
    assert code == 1
    assert "not causal" in one_line_error(capsys)


def test_missing_sounddevice_says_what_to_install(model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    assert main(["stream", "--mic", "-m", str(model_dir)]) == 1
    assert "focalcodec[stream]" in capsys.readouterr().err


class _FakeDevices:
    """Stands in for sounddevice: a microphone that plays back a signal, a recorder."""

    def __init__(self, signal: np.ndarray, stop_after: int | None = None) -> None:
        self.signal, self.pos, self.reads = signal, 0, 0
        self.stop_after = stop_after
        self.played: list[np.ndarray] = []
        self.rates: dict[str, int] = {}

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("sounddevice")
        mod.InputStream = self._input
        mod.OutputStream = self._output
        return mod

    def _input(self, samplerate, channels, dtype, blocksize):
        self.rates["in"] = samplerate
        return _Stream(read=self._read)

    def _output(self, samplerate, channels, dtype):
        self.rates["out"] = samplerate
        return _Stream(write=lambda block: self.played.append(block.copy()))

    def _read(self, frames: int):
        if self.stop_after is not None and self.reads == self.stop_after:
            raise KeyboardInterrupt
        self.reads += 1
        data = self.signal[self.pos : self.pos + frames]
        self.pos += frames
        return data.reshape(-1, 1), False


class _Stream:
    def __init__(self, read=None, write=None) -> None:
        self.read, self.write = read, write

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def test_mic_to_speakers_and_file(model_dir, speech, tmp_path, monkeypatch, capsys):
    fake = _FakeDevices(speech)
    monkeypatch.setitem(sys.modules, "sounddevice", fake.module())
    out = tmp_path / "mic.wav"
    argv = ["stream", "--mic", "--play", "-o", str(out), "-m", str(model_dir)]
    assert main([*argv, "--duration", "0.5", "-q"]) == 0
    assert fake.rates == {"in": 16000, "out": 24000}
    played = np.concatenate(fake.played)[:, 0]
    assert len(played) == 8000 * 3 // 2
    expected = _offline(model_dir, speech[:8000])
    np.testing.assert_allclose(played, expected, atol=1e-4)
    assert len(sf.read(out)[0]) == len(played)


def test_ctrl_c_finishes_the_stream(model_dir, speech, tmp_path, monkeypatch, capsys):
    fake = _FakeDevices(speech, stop_after=3)
    monkeypatch.setitem(sys.modules, "sounddevice", fake.module())
    out = tmp_path / "mic.wav"
    assert main(["stream", "--mic", "-o", str(out), "-m", str(model_dir)]) == 0
    assert len(sf.read(out)[0]) == 3 * 1280 * 3 // 2
    assert "stopped" in capsys.readouterr().err


# -- --backend onnx ---------------------------------------------------------------------


def _export(tmp_path_factory, golden_dir: Path, case: str) -> Path:
    pytest.importorskip("onnxruntime")
    from support import exported  # needs the onnx extra too (skips without it)

    return exported(tmp_path_factory, golden_dir, case)[1]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, golden_dir: Path) -> Path:
    return _export(tmp_path_factory, golden_dir, CASE)


def test_onnx_backend_equals_torch_backend(model_dir, onnx_dir, wav, speech, tmp_path):
    from support import AUDIO_TOL

    ref, out = tmp_path / "torch.wav", tmp_path / "onnx.wav"
    argv = ["stream", str(wav), "-q", "-o"]
    # The ONNX graphs take whole blocks, so its default tail is --pad zeros.
    assert main([*argv, str(ref), "-m", str(model_dir), "--pad", "zeros"]) == 0
    assert main([*argv, str(out), "-m", str(onnx_dir), "--backend", "onnx"]) == 0
    data, rate = sf.read(out, dtype="float32")
    expected, _ = sf.read(ref, dtype="float32")
    assert rate == 24000 and len(data) == len(speech) * 3 // 2
    # 16-bit files: values AUDIO_TOL apart may round to neighbouring steps.
    np.testing.assert_allclose(data, expected, atol=AUDIO_TOL + 2**-15)
    # Before the padded last block, the stream is the offline result (causal model).
    whole = len(speech) // 1280 * 1280 * 3 // 2
    offline = _offline(model_dir, speech)[:whole]
    np.testing.assert_allclose(data[:whole], offline, atol=AUDIO_TOL + 2**-15)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ref", "IN"], "no kNN voice conversion"),
        (["--pad", "none"], "--pad zeros"),
        (["--random-weights"], "PyTorch model"),
        (["--device", "cuda"], "runs on the CPU"),
    ],
)
def test_onnx_backend_usage_errors(onnx_dir, wav, extra, message, capsys):
    extra = [str(wav) if a == "IN" else a for a in extra]
    argv = ["stream", str(wav), "-m", str(onnx_dir), "--backend", "onnx", *extra]
    assert main(argv) == 2
    assert message in one_line_error(capsys)


def test_onnx_backend_needs_an_export_folder(model_dir, wav, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["stream", str(wav), "--backend", "onnx"]) == 2
    assert "needs --model DIR" in capsys.readouterr().err
    assert main(["stream", str(wav), "--backend", "onnx", "-m", str(model_dir)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_onnx_export_that_cannot_stream_is_one_line(
    tmp_path_factory, golden_dir, onnx_dir, wav, tmp_path, capsys
):
    from support import without_stream_graphs

    noncausal = _export(tmp_path_factory, golden_dir, "noncausal_vocos_12_5hz_legacy")
    no_steps = without_stream_graphs(onnx_dir, tmp_path)
    out = tmp_path / "out.wav"
    for folder, message in [(noncausal, "not causal"), (no_steps, "streaming graphs")]:
        argv = ["stream", str(wav), "-o", str(out), "-m", str(folder)]
        assert main([*argv, "--backend", "onnx"]) == 1
        assert message in one_line_error(capsys)
        assert not out.exists()
