"""towerlab: train the classic deep-learning systems on a CPU, one GPU or many GPUs."""

__version__ = "0.1.0"
