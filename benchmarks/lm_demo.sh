#!/usr/bin/env bash
# Token LM + entropy coding demonstration (docs/lm.md, docs/entropy.md), on the CPU:
#   1. tokens of ../shared/audio through CODEC     -> $RUN/tokens        (~3 min)
#   2. a small token LM on the train split         -> $RUN/train         (~4 min)
#      and a larger one that overfits              -> $RUN/train_large   (~20 min)
#   3. plain vs adaptive vs LM-coded .fcz on the held-out test split, silence and tones,
#      and the golden models (adaptive only)       -> benchmarks/results/$OUT.json,
#                                                     docs/figures/lm_demo_curves.png
# CODEC defaults to the codec of the training demo (benchmarks/train_demo.sh), RUN to
# runs/lm_demo. For an official checkpoint (downloaded from the Hub):
#   CODEC=focalcodec_50hz OUT=entropy_50hz RUN=runs/lm_50hz benchmarks/lm_demo.sh
# Run from the repository root. Pass --force to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
CODEC="${CODEC:-../artifacts/demo_codec}"
SHARED="${SHARED:-../shared}"
OUT="${OUT:-entropy_demo}"
RUN="${RUN:-runs/lm_demo}"
FORCE="${1:-}"
export OMP_NUM_THREADS=1
if [ -n "$FORCE" ] || [ ! -f "$RUN/tokens/index.jsonl" ]; then
  nice -n 10 python benchmarks/bench_entropy.py tokenize --codec "$CODEC" \
      --manifest "$SHARED/audio/manifest.jsonl" -o "$RUN/tokens" --force
fi
TRAIN=(--config configs/lm/demo.yaml data.source="$RUN/tokens")
nice -n 10 python -m focalcodec lm train "${TRAIN[@]}" run_dir="$RUN/train" $FORCE
# The same with a larger model and more steps: it overfits the 172k training tokens.
nice -n 10 python -m focalcodec lm train "${TRAIN[@]}" run_dir="$RUN/train_large" $FORCE \
    model.num_layers=3 model.context=128 model.dropout=0.1 optim.lr=2e-3 \
    optim.gamma=0.9995 trainer.max_steps=600 trainer.valid_every=200 \
    trainer.checkpoint_every=200
FIGURE=docs/figures/lm_demo_curves.png
[ "$OUT" = entropy_demo ] || FIGURE="docs/figures/${OUT}_curves.png"
nice -n 10 python benchmarks/bench_entropy.py measure --codec "$CODEC" \
    --lm "$RUN/train/export" --tokens "$RUN/tokens" \
    --manifest "$SHARED/audio/manifest.jsonl" \
    --golden tests/data/golden --json "benchmarks/results/$OUT.json" \
    --curves "$FIGURE" --runs "$RUN/train" "$RUN/train_large"
