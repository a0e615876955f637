#!/usr/bin/env bash
# Token LM + entropy coding demonstration (docs/lm.md, docs/entropy.md), on the CPU:
#   1. tokens of ../shared/audio through CODEC        -> runs/lm_demo/tokens   (~3 min)
#   2. a small token LM on the train split            -> runs/lm_demo/train    (15 min)
#   3. plain vs adaptive vs LM-coded .fcz on the held-out test split, silence and tones,
#      and the golden models (adaptive)   -> benchmarks/results/entropy_demo.json,
#                                            docs/figures/lm_demo_curves.png
# CODEC defaults to the codec of the training demo (benchmarks/train_demo.sh); for an
# official checkpoint: CODEC=focalcodec_50hz OUT=entropy_50hz benchmarks/lm_demo.sh
# Run from the repository root. Pass --force to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
CODEC="${CODEC:-../artifacts/demo_codec}"
SHARED="${SHARED:-../shared}"
OUT="${OUT:-entropy_demo}"
FORCE="${1:-}"
export OMP_NUM_THREADS=1
if [ -n "$FORCE" ] || [ ! -f runs/lm_demo/tokens/index.jsonl ]; then
  nice -n 10 python benchmarks/bench_entropy.py tokenize --codec "$CODEC" \
      --manifest "$SHARED/audio/manifest.jsonl" -o runs/lm_demo/tokens --force
fi
nice -n 10 python -m focalcodec lm train --config configs/lm/demo.yaml $FORCE
nice -n 10 python benchmarks/bench_entropy.py measure --codec "$CODEC" \
    --lm runs/lm_demo/train/export --manifest "$SHARED/audio/manifest.jsonl" \
    --golden tests/data/golden --json "benchmarks/results/$OUT.json" \
    --curves docs/figures/lm_demo_curves.png --run runs/lm_demo/train
