"""docs/migration.md: its example runs, and the README links to it."""

from __future__ import annotations

import torch

from support import REPO


def test_migration_example_runs(golden_dir) -> None:
    text = (REPO / "docs" / "migration.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    code = text[start : text.index("```", start)]
    local = str(golden_dir / "causal_wavenext_50hz")  # same rates and 4096 codes
    assert '"lucadellalib/focalcodec_50hz_4k_causal"' in code
    code = code.replace('"lucadellalib/focalcodec_50hz_4k_causal"', repr(local))
    namespace: dict = {}
    with torch.no_grad():
        exec(compile(code, "migration.md", "exec"), namespace)
    assert namespace["toks"].shape == (1, 32)
    assert namespace["codes"].shape == (1, 32, 12)
    assert namespace["rec"].shape == (1, 15360)
    rec, streamed = namespace["rec"], namespace["streamed"]
    assert float((rec - streamed).abs().max()) <= 1e-4
    assert len(namespace["state"]) == 4


def test_readme_links_the_migration_guide() -> None:
    assert "docs/migration.md" in (REPO / "README.md").read_text()
