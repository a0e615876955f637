"""The probe recipes load, and every probe command in the docs parses into a valid
recipe (so the documented commands stay runnable)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from focalcodec.cli import probe as probe_verb
from focalcodec.cli.app import build_parser
from focalcodec.probe.config import load_probe_config
from support import REPO

RECIPES = sorted((REPO / "configs" / "probe").glob("*.yaml"))


def documented_commands() -> list[list[str]]:
    commands = []
    for doc in (REPO / "docs" / "probes.md", REPO / "README.md"):
        text = doc.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                argv = shlex.split(line)
                if argv[:1] == ["torchrun"] and "focalcodec" in argv:
                    argv = argv[argv.index("focalcodec") :]
                if argv[:2] == ["focalcodec", "probe"]:
                    commands.append(argv[1:])
    return commands


COMMANDS = documented_commands()


def test_the_docs_show_every_task():
    tasks = {argv[1] for argv in COMMANDS}
    assert tasks == {"classify", "asr", "prepare"} and len(COMMANDS) >= 15


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipes_load(recipe):
    cfg = load_probe_config(recipe, ["data.manifest=m.jsonl", "data.label=x"])
    assert cfg.trainer.max_epochs > 0
    if recipe.stem != "cpu_small":
        # The papers' protocol, as the docs state it.
        assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay) == (
            1e-4,
            [0.8, 0.99],
            0.01,
        )
        assert (cfg.optim.grad_clip, cfg.optim.gamma, cfg.optim.threshold) == (
            0.01,
            0.9,
            0.0025,
        )
        assert (cfg.data.batch_size, cfg.net.hidden, cfg.net.layers) == (16, 512, 2)
        assert cfg.trainer.max_epochs == 100 and cfg.net.dropout == 0.1


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a[:2]) for a in COMMANDS])
def test_documented_commands_parse(argv, monkeypatch):
    monkeypatch.chdir(REPO)
    args = build_parser(argv).parse_args(argv)
    if args.probe_command == "prepare":
        return
    cfg = load_probe_config(args.config, probe_verb._overrides(args))
    assert cfg.task == args.probe_command


def test_measured_tables_match_the_committed_json():
    """docs/probes.md quotes benchmarks/results/probes/*.json, number for number."""
    doc = (REPO / "docs" / "probes.md").read_text()
    results = REPO / "benchmarks" / "results" / "probes"
    rows = 0
    for task in ("speaker", "language", "asr"):
        summary = json.loads((results / f"{task}.json").read_text())
        for r in summary["models"]:
            if summary["task"] == "classify":
                cells = [
                    f"{100 * r['test_accuracy']:.1f} % ({100 * r['chance_accuracy']:.1f} %)",
                    f"{100 * r['test_error_rate']:.1f} %",
                ]
            else:
                cells = [f"{100 * r['test_cer']:.1f} %", f"{100 * r['test_wer']:.1f} %"]
            cells.append(f"{r['best_value']:.3f}")
            cells.append(f"{r['epochs']} ({r['best_epoch']})")
            line = " | ".join(cells)
            plain = doc.replace("**", "")
            assert line in plain, (task, r["model"], line)
            rows += 1
        sizes = summary["data"]["sizes"]
        assert f"{sizes['train']} / {sizes['valid']} / {sizes['test']}" in doc
    assert rows == 6
