"""towerlab: train the classic deep-learning systems on a CPU, one GPU or many GPUs."""

__version__ = "0.1.0"


def drop_cwd_from_path() -> None:
    """`python -m towerlab...` puts the current folder first on the import path, where a user's yaml.py or
    torch.py would shadow the real package. The entry points take it off before importing anything else (what
    `python -P` does); the processes towerlab starts get -P itself."""
    import os
    import sys

    if sys.flags.safe_path:
        return
    here = {"", os.getcwd()}
    while sys.path and sys.path[0] in here:
        sys.path.pop(0)
