"""The class a model's probabilities decide, in one place for every command that decides one (evaluation's report,
predict, export's metadata, the service on PyTorch and on ONNX Runtime). Torch-free: it works alike on numpy arrays
and torch tensors, so the ONNX service uses it without torch."""

from __future__ import annotations


def decide(probs, threshold: float | None = None):
    """The predicted class of each row of probabilities [N, classes]: the most probable, or, for two classes with an
    operating threshold (a defect run's best-F1 point), class 1 where its probability reaches the threshold."""
    if threshold and probs.shape[1] == 2:
        return (probs[:, 1] >= threshold) * 1
    return probs.argmax(1)
