#!/usr/bin/env bash
# CPU training demonstration (docs/training.md): about 20 minutes on one core.
# (The stage budgets are trainer.max_minutes in configs/demo/*.yaml.)
#   quantizer stage, 6 min  ->  runs/demo/quantizer/export
#   decoder stage, 9 min    ->  runs/demo/decoder/export
#   before/after evaluation on the test split -> benchmarks/results/train_demo.json,
#   docs/figures/train_demo_curves.png, docs/figures/train_demo_spectrograms.png
# Run from the repository root, with ../shared next to it. Pass --force to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
FORCE="${1:-}"
export OMP_NUM_THREADS=1
nice -n 10 python -m focalcodec.train quantizer --config configs/demo/quantizer.yaml $FORCE
nice -n 10 python -m focalcodec.train decoder --config configs/demo/decoder.yaml $FORCE
nice -n 10 python benchmarks/train_demo_eval.py --runs runs/demo --figures docs/figures \
    --json benchmarks/results/train_demo.json
