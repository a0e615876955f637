"""The README stays true: its commands are what CI runs, its model table is the configs."""

from __future__ import annotations

import re

import torch

from focalcodec import FocalCodec, list_models
from support import REPO, run_cli


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    install_and_run, test_command = readme[fence + 1], readme[fence + 2]
    assert install_and_run.startswith("pip install") and "focalcodec" in install_and_run
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_model_table_matches_packaged_configs() -> None:
    text = (REPO / "README.md").read_text()
    rows = re.findall(
        r"^\| `(focalcodec_\w+)` \| ([\d.]+) \| (\d+) \| (\d+) \|", text, re.M
    )
    assert sorted(r[0] for r in rows) == list_models()
    for name, rate, codebook, bits in rows:
        with torch.device("meta"):
            model = FocalCodec.from_config(name)
        assert model.token_rate == float(rate)
        assert model.codebook_size == int(codebook)
        assert model.bits_per_token == int(bits)


def test_readme_quick_start_runs(golden_dir, monkeypatch) -> None:
    """The Python quick start, with a tiny golden model in place of the Hub download."""
    text = (REPO / "README.md").read_text()
    start = text.index("```python\nimport torch")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    local = str(golden_dir / "noncausal_vocos_50hz")
    code = code.replace('"lucadellalib/focalcodec_50hz"', repr(local))
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    toks, rec = namespace["toks"], namespace["rec"]
    assert toks.dim() == 2 and rec.shape[1] == toks.shape[1] * 320
    assert namespace["converted"].shape == rec.shape


def test_readme_files_example_runs(golden_dir, tmp_path, monkeypatch) -> None:
    """The pipeline example: files written there equal the command line's."""
    text = (REPO / "README.md").read_text()
    start = text.index("```python\nfrom focalcodec.pipeline.files import")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    local = str(golden_dir / "noncausal_vocos_50hz")
    code = code.replace('"focalcodec_50hz"', repr(local))
    code = code.replace(
        '"examples/speech.flac"', repr(str(REPO / "examples/speech.flac"))
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.size == (tmp_path / "speech.fcz").stat().st_size
    assert abs(report.num_tokens - report.seconds * 50) < 2  # 50 tokens per second
    assert run_cli(
        "encode", REPO / "examples/speech.flac", "-o", "cli.fcz", "-m", local,
        "--entropy", "adaptive", "-q",
    ) == 0  # fmt: skip
    assert (tmp_path / "cli.fcz").read_bytes() == (tmp_path / "speech.fcz").read_bytes()
    assert (tmp_path / "speech.48k.flac").exists() and (
        tmp_path / "speech.wav"
    ).exists()


def test_readme_streaming_example_runs(golden_dir) -> None:
    """The README's streaming snippet, on the tiny causal golden model."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Streaming and long audio")
    start = text.index("```python\n", start) + len("```python\n")
    code = text[start : text.index("```", start)]
    local = str(golden_dir / "causal_wavenext_50hz")
    code = code.replace('"lucadellalib/focalcodec_50hz_2k_causal"', repr(local))
    assert repr(local) in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    codec, heard = namespace["codec"], namespace["heard"]
    expected = 16000 * codec.sample_rate_output // codec.sample_rate_input
    assert heard.shape == (1, expected)
    assert torch.isfinite(heard).all()


def test_streaming_doc_batch_example_runs(monkeypatch) -> None:
    """docs/streaming.md's StreamBatch example (it asserts solo tokens itself)."""
    text = (REPO / "docs" / "streaming.md").read_text()
    at = text.index("from focalcodec.streaming import StreamBatch")
    start = text.rindex("```python\n", 0, at) + len("```python\n")
    code = text[start : text.index("```", at)]
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(code, "streaming.md", "exec"), namespace)
    assert namespace["alice"].shape == namespace["alone"].shape
