"""The LM and entropy-coding figures of the README and docs read back from their JSON."""

from __future__ import annotations

import json
import re

from support import REPO

RESULT = json.loads((REPO / "benchmarks/results/entropy_demo.json").read_text())
ROWS = RESULT["rows"]


def flat(name: str) -> str:
    return re.sub(r"\s+", " ", (REPO / name).read_text())


def pct(row: dict, model: str) -> str:
    return f"{100 * row[model]['relative_size']:.1f} %"


def test_speech_table() -> None:
    row = ROWS["demo_codec/speech_test"]
    doc = flat("docs/entropy.md")
    for model, label in (("plain", "none (plain packing)"), ("adaptive", "`adaptive`")):
        r = row[model]
        cells = f"| {label} | {r['bytes']:,} | {pct(row, model)} | "
        assert cells + f"{r['bits_per_token']:.2f} | {r['file_bitrate']:.0f} |" in doc
    lm = row["lm"]
    assert f"| {lm['bytes']:,} | {pct(row, 'lm')} | {lm['bits_per_token']:.2f} |" in doc
    assert f"{row['files'] - lm['coded_files']} short files are stored plain" in doc
    readme = flat("README.md")
    quoted = (
        f"adaptive model stores {row['adaptive']['bits_per_token']:.2f} and a 0.66 "
    )
    assert (
        quoted + f"M-parameter LM {lm['bits_per_token']:.2f} bits per token" in readme
    )
    assert f"({100 * lm['relative_size']:.0f} % of the plain file size)" in readme


def test_lm_figures() -> None:
    ev, uni = RESULT["lm_eval_test"], RESULT["unigram"]
    lm_doc, entropy_doc = flat("docs/lm.md"), flat("docs/entropy.md")
    assert f"**{ev['bits_per_token']:.2f} bits per token, " in lm_doc
    assert f"{ev['bits_per_second']:.0f} bits per second**" in lm_doc
    assert abs(ev["exact_bits_per_token"] - ev["bits_per_token"]) < 1e-6
    assert f"float model {ev['bits_per_token']:.4f}, exact coder model" in entropy_doc
    assert f"entropy of {uni['train_entropy_bits']:.2f} bits" in lm_doc
    assert f"cost {uni['test_cross_entropy_bits']:.2f} bits under them" in lm_doc
    for run, label in (
        ("runs/lm_demo/train", "300"),
        ("runs/lm_demo/train_large", "600"),
    ):
        valid = RESULT["runs"][run]["valid_bits_per_token"]
        step, best = min(valid, key=lambda p: p[1])
        assert f"{best:.3f} (step {step}) / {valid[-1][1]:.3f}" in lm_doc, run
        assert valid[-1][0] == int(label)


def test_synthetic_and_golden_tables() -> None:
    doc = flat("docs/entropy.md")
    for name, sizes in RESULT["synthetic_bytes"].items():
        assert str(sizes["plain"]) in doc and str(sizes["adaptive"]) in doc, name
    syn = ROWS["demo_codec/synthetic"]
    assert f"{syn['adaptive']['bytes']} ({pct(syn, 'adaptive')}," in doc
    assert f"{syn['adaptive']['bits_per_token']:.2f} bits/token)" in doc
    assert f"needs {syn['adaptive']['bits_per_token']:.2f} bits" in flat("README.md")
    for key, row in ROWS.items():
        if key.startswith("golden/") and key.endswith("speech_test"):
            r = row["adaptive"]
            cells = f"{pct(row, 'adaptive')}, {r['bits_per_token']:.2f}, "
            assert cells + f"{r['coded_files']}/{row['files']}" in doc, key
            assert all(
                v["relative_size"] <= 1 for v in row.values() if isinstance(v, dict)
            )
