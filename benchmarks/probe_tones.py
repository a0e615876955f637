"""Probes against their bag-of-tokens baseline on synthetic tones (docs/probes.md).

Four pure tones (tests/support.py ``write_tones``: 130, 410, 1310 and 4170 Hz, 24 clips
each), tokenized by the golden non-causal 50 Hz model; each run trains a probe and
reports its test accuracy next to the bag-of-tokens baseline of the same splits
(``focalcodec.probe.baseline``). Rows:

* the papers' protocol (``configs/probe/librispeech_speaker.yaml``: BiLSTM 2 x 512,
  AdamW lr 1e-4, batch 16) as it was before issue 25 (``net.norm=false``, best epoch
  by the validation error rate alone, the first on ties), with the pooled
  normalisation only, and as it is now (normalised, ties ranked by the loss);
* the same with shuffled labels (must stay near chance, 25 %);
* the small CPU recipe (``configs/probe/cpu_small.yaml``).

Every run has the same epoch budget (``--epochs``, 20 by default) and split
(``data.valid_fraction=data.test_fraction=0.2``: 15 / 4 / 5 clips per tone).

Command (from the repository root; one to two hours on the busy 2-core VM)::

    OMP_NUM_THREADS=2 nice python benchmarks/probe_tones.py --epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from machine import machine  # noqa: E402

from focalcodec.probe import ProbeJob, load_probe_config, run_probe  # noqa: E402
from support import write_tones  # noqa: E402

MODEL = REPO / "tests" / "data" / "golden" / "noncausal_vocos_50hz"
PAPER = REPO / "configs" / "probe" / "librispeech_speaker.yaml"
SMALL = REPO / "configs" / "probe" / "cpu_small.yaml"
BEFORE = ["net.norm=false", "trainer.best_metric=error_rate"]
ROWS = [
    ("paper recipe before issue 25", PAPER, "pitch", BEFORE),
    ("paper recipe, normalised head only", PAPER, "pitch", BEFORE[1:]),
    ("paper recipe now", PAPER, "pitch", []),
    ("paper recipe now, shuffled labels", PAPER, "shuffled", []),
    ("cpu_small recipe now", SMALL, "pitch", []),
]


def one(tmp: Path, recipe: Path, label: str, extra: list[str], epochs: int) -> dict:
    tones = write_tones(tmp / "tones")
    overrides = [
        f"data.manifest={tones}",
        f"data.label={label}",
        f"data.cache_dir={tmp / 'cache'}",
        "data.valid_fraction=0.2",
        "data.test_fraction=0.2",
        "trainer.device=cpu",
        "trainer.precision=fp32",
        f"trainer.max_epochs={epochs}",
        "log.progress=false",
        *extra,
    ]
    cfg = load_probe_config(recipe, overrides)
    out = tmp / f"run{len(list(tmp.glob('run*')))}"
    start = time.time()
    summary = run_probe(ProbeJob(cfg, [str(MODEL)], out, progress=False))
    (result,) = summary["models"]
    return {
        "sizes": summary["data"]["sizes"],
        "test_accuracy": result["test_accuracy"],
        "baseline_test_accuracy": result["baseline"]["test_accuracy"],
        "chance_accuracy": result["chance_accuracy"],
        "epochs": result["epochs"],
        "best_epoch": result["best_epoch"],
        "valid_error_rate": [c["valid_error_rate"] for c in result["curves"]],
        "wall_seconds": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks/results/probe_tones.json"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe, label, extra in ROWS:
            row = one(Path(tmp), recipe, label, extra, args.epochs)
            rows.append({"row": name, "recipe": recipe.name, "label": label,
                         "overrides": extra, **row})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    record = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} nice "
        "python benchmarks/probe_tones.py " + " ".join(sys.argv[1:]),
        "model": str(MODEL.relative_to(REPO)),
        "machine": machine(),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
