#!/usr/bin/env bash
# chemvae on ZINC (24,445 molecules of the 250k set, JT-VAE's valid.txt; 10% held out), then 1,000 prior samples
# (validity / unique / novelty, MOSES definitions) and reconstruction of the 5,000 molecules of test.txt.
#   TOWERLAB_DATA=../shared/data bash bench/chemvae_quality.sh [OUT_DIR] [STEPS] [more train flags ...]
set -euo pipefail
out=${1:-bench/out/chemvae}
steps=${2:-1500}
shift $(( $# < 2 ? $# : 2 ))
data="$TOWERLAB_DATA/zinc250k_jtvae/valid.txt"
python -m towerlab train chemvae --data "$data" --max-len 80 --batch-size 64 --max-steps "$steps" \
  --kl-warmup-steps $((steps / 2)) --eval-every-steps $((steps / 5)) --log-every 50 --out "$out/run" "$@"
python -m towerlab chem sample "$out/run" --n 1000 --out "$out/samples.csv" | tee "$out/sample_metrics.txt"
python -m towerlab chem encode "$out/run" "$TOWERLAB_DATA/zinc250k_jtvae/test.txt" --out "$out/test_latents.csv" \
  | tee "$out/reconstruction.txt"
