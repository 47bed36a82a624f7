#!/usr/bin/env bash
# SegDecNet on KolektorSDD: the paper's seg-then-dec training on each of the 3 folds (split by item), then a table of
# the image-level AP / AUC / errors and the mask Dice per fold and their mean. Sizes are the paper's 1408x512 scaled
# like the data in ../shared/data (downscaled by 4): 352x128; a narrower 15x15 layer (--feature-channels) for a CPU.
#   TOWERLAB_DATA=../shared/data bash bench/segdec_folds.sh [OUT_DIR] [EPOCHS_PER_STAGE] [extra train flags...]
set -euo pipefail
out=${1:-bench/out/segdec_folds}
epochs=${2:-20}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$out"
for fold in 0 1 2; do
  python -m towerlab train segdec --height 352 --width 128 --feature-channels 256 --batch-size 4 \
    --epochs "$epochs" --eval-every-epochs 5 --fold "$fold" --out "$out/fold$fold" "$@"
done
python - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
keys = ("ap", "auc", "fp@0.5", "fn@0.5", "fp@best_f1", "fn@best_f1", "dice")
rows = [{"fold": f, **{k: json.loads((Path(sys.argv[1]) / f"fold{f}" / "dec" / "final_metrics.json").read_text())[k]
                       for k in keys}} for f in range(3)]
rows.append({"fold": "mean", **{k: statistics.mean(r[k] for r in rows) for k in keys}})
print("| fold | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
for r in rows:
    print(f"| {r['fold']} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
(Path(sys.argv[1]) / "summary.json").write_text(json.dumps(rows, indent=2))
PY
