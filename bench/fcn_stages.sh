#!/usr/bin/env bash
# FCN-32s -> FCN-16s -> FCN-8s staged training (the paper's schedule), plus a control that keeps training
# FCN-32s for the same number of steps, so the ordering is not just "more steps". From scratch (no ImageNet
# weights can be downloaded here), a narrow VGG16 (--width 0.125) so that it runs on a CPU.
#   TOWERLAB_DATA=../shared/data bash bench/fcn_stages.sh [OUT_DIR] [STEPS_PER_STAGE]
set -euo pipefail
out=${1:-bench/out/fcn_stages}
steps=${2:-400}
common=(--dataset camvid --width 0.125 --fc-channels 256 --optimizer adam --lr 1e-3 --weight-decay 0
        --schedule cosine --batch-size 8 --max-steps "$steps" --eval-every-steps 100 --log-every 50)
towerlab() { python -m towerlab "$@"; }
mkdir -p "$out"
towerlab train fcn32s "${common[@]}" --out "$out/fcn32s"
towerlab train fcn16s "${common[@]}" --init-from "$out/fcn32s" --out "$out/fcn16s"
towerlab train fcn8s  "${common[@]}" --init-from "$out/fcn16s" --out "$out/fcn8s"
towerlab train fcn32s "${common[@]}" --init-from "$out/fcn32s" --out "$out/fcn32s_x2"
towerlab train fcn32s "${common[@]}" --init-from "$out/fcn32s_x2" --out "$out/fcn32s_x3"
python - "$out" <<'PY'
import json, sys
from pathlib import Path
rows = []
for name in ("fcn32s", "fcn16s", "fcn8s", "fcn32s_x2", "fcn32s_x3"):
    m = json.loads((Path(sys.argv[1]) / name / "final_metrics.json").read_text())
    rows.append({"run": name, **{k: round(m[k], 4) for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "fw_iou")}})
print("| run | pixel acc | mean acc | mean IU | f.w. IU |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r['pixel_accuracy']} | {r['mean_class_accuracy']} | {r['mean_iou']} | {r['fw_iou']} |")
(Path(sys.argv[1]) / "summary.json").write_text(json.dumps(rows, indent=2))
PY
