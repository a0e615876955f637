#!/usr/bin/env bash
# Downstream probes on ../shared/audio on one CPU core (docs/probes.md, "Measured here").
#   speaker ID on librispeech/test-other (10 speakers x 10 files, splits carved per speaker)
#   language ID on multilingual/ (5 languages; the manifest's 19 train / 4 test per language)
#   ASR on the multilingual/ prompts (characters, 5 languages; files over 8 s are left out
#   of training to keep CPU time down, the test split keeps them; a constant lr 3e-3 and
#   60 epochs, since CTC must first leave the all-blank output; best epoch by the
#   validation character error rate)
# each for the CPU training-demo codec and for a random-weight codec of the same
# architecture (random:..., seed 0: the same frozen random WavLM as the demo, untrained
# compressor). Small settings: configs/probe/cpu_small.yaml.
# Results: benchmarks/results/probes/*.json, docs/figures/probe_*.png.
# Usage: benchmarks/probe_shared.sh [MODEL_DIR] [--force]   (run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-/work/artifacts/demo_codec}"
FORCE="${2:-}"
DATA="${FOCALCODEC_SHARED:-../shared}/audio/manifest.jsonl"
export OMP_NUM_THREADS=1
run() {  # task name, then the probe arguments
  local name=$1; shift
  nice -n 10 python -m focalcodec probe "$@" -c configs/probe/cpu_small.yaml --data "$DATA" \
    -m "$MODEL" -m "random:$MODEL" -o "runs/probes/$name" --cache-dir runs/probes/cache \
    $FORCE
  mkdir -p benchmarks/results/probes
  cp "runs/probes/$name/results.json" "benchmarks/results/probes/$name.json"
  cp "runs/probes/$name/results.md" "benchmarks/results/probes/$name.md"
  cp "runs/probes/$name/learning_curves.png" "docs/figures/probe_${name}_curves.png"
}
run speaker classify --label speaker --where 'id=librispeech/test-other/*' --resplit \
  --set data.test_fraction=0.2
run language classify --label language --where 'id=multilingual/*'
run asr asr --where 'id=multilingual/*' --set data.max_train_seconds=8 --max-epochs 60 \
  --set optim.lr=3e-3 --set optim.scheduler=constant --set trainer.early_stop_patience=20 \
  --set trainer.best_metric=error_rate
