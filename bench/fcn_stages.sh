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
towerlab() { python -m towerlab "$@" --auto-resume --no-report; }
# a finished run is skipped, a cut-off one continues (--auto-resume): the script can be run again after a stop
run() { [ -f "$2/final_metrics.json" ] || towerlab train "$1" "${common[@]}" "${@:3}" --out "$2"; }
mkdir -p "$out"
run fcn32s "$out/fcn32s"
# after FCN-32s the staged chain and the control chain are independent: side by side, half the cores each
half=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
( export OMP_NUM_THREADS=$half
  run fcn16s "$out/fcn16s" --init-from "$out/fcn32s"
  run fcn8s "$out/fcn8s" --init-from "$out/fcn16s" ) &
staged=$!
( export OMP_NUM_THREADS=$half
  run fcn32s "$out/fcn32s_x2" --init-from "$out/fcn32s"
  run fcn32s "$out/fcn32s_x3" --init-from "$out/fcn32s_x2" ) &
control=$!
# both chains are waited for, whichever fails first: the script never exits with a chain still training
failed=0
wait $staged || failed=$?
wait $control || failed=$?
[ "$failed" -eq 0 ] || { echo "fcn_stages: a chain failed (exit $failed); rerun to continue the unfinished runs" >&2; exit "$failed"; }
python - "$out" <<'PY'
import json, sys
from pathlib import Path
rows = []
for name in ("fcn32s", "fcn16s", "fcn8s", "fcn32s_x2", "fcn32s_x3"):
    m = json.loads((Path(sys.argv[1]) / name / "final_metrics.json").read_text())
    rows.append({"run": name, **{k: round(m[k], 4) for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "fw_iou")},
                 "wall_s": round(m.get("wall_s", 0))})
print("| run | pixel acc | mean acc | mean IU | f.w. IU | wall s |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r['pixel_accuracy']} | {r['mean_class_accuracy']} | {r['mean_iou']} | {r['fw_iou']} | {r['wall_s']} |")
(Path(sys.argv[1]) / "summary.json").write_text(json.dumps(rows, indent=2))
PY
