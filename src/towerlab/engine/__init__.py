"""The one training loop: fit(recipe, cfg, dist) -> metrics dict; fit_plan(plan, dist) for a plan made once where a
command starts (runs/plan.py).

    towerlab train mnist --data DIR                 # CPU, or the one visible GPU
    towerlab train mnist --data DIR --gpus 4        # 4 GPUs: relaunches itself under torchrun
    torchrun --nproc-per-node 4 -m towerlab train mnist --data DIR   # the same, launched by hand

Under torchrun (RANK set) every process builds the same model from the same seed, wraps it in
DistributedDataParallel and trains on its own slice of each global batch; gradients are averaged
in backward, so the replicas stay identical. A search, a test and the CLI all train through `fit_plan`.

  fit.py         fit, resume, fit_plan: a plan into its run directory (fresh, continued, in stages)
  trainer.py     the Trainer: model, optimizer, schedule, EMA, step, and the loop
  evaluation.py  validation, the best evaluation, the test split scored for it, its predictions kept
  train_log.py   the training log (summed on the device, one host sync per line)
  state.py       the checkpoint of a Trainer: written and read back, bit for bit
  loop.py        the loop's clocks, early stopping, a loader with a bar
"""

from towerlab.engine.fit import fit, fit_plan, fit_stages, resume
from towerlab.engine.loop import Stopping
from towerlab.engine.trainer import Trainer
from towerlab.runs.plan import RESUMABLE, Plan, resume_config

__all__ = ["RESUMABLE", "Plan", "Stopping", "Trainer", "fit", "fit_plan", "fit_stages", "resume", "resume_config"]
