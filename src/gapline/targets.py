"""How integer class labels become what the model is trained against.

One place, so training, evaluation and the gap agree on the encoding (one-hot for the
softmax classifier today; other tasks bring their own).
"""

from __future__ import annotations

import numpy as np


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[y]
