"""The Python example of docs/reliability.md runs as written (with a temporary folder)."""

from __future__ import annotations

from support import REPO


def test_reliability_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "docs" / "reliability.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    code = text[start : text.index("```", start)].replace("/tmp/", f"{tmp_path}/")
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/reliability.md", "exec"), {})
    assert "its own input" in capsys.readouterr().out
    assert (tmp_path / "long.fcz").stat().st_size > 0
    assert (tmp_path / "long.flac").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "long.fcz",
        "long.flac",
        "long.wav",
    ]
