"""gapline: reproducible, regularized Keras training that makes overfitting visible."""

import os as _os

# Before any TensorFlow import: keep its C++ banner out of stage logs, and use the plain
# (not oneDNN-fused) CPU kernels so results repeat bit for bit. Users may override both.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
