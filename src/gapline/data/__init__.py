"""Data loading, validation, splitting and fingerprinting.

Kept free of TensorFlow/Keras (and of eager pandas/PIL imports) so that the CLI and the
data stages start fast. Import the submodules directly: ``gapline.data.dataset`` (the
layout and its checks), ``sources`` (npz, CSV), ``images`` (image folders), ``bundled``
(scikit-learn's sets), ``labels``, ``split``, ``fingerprint``, ``prepare``, ``store`` (splits on
disk, read and written a chunk of rows at a time), ``layout``, ``meta`` (meta.json's typed
record).
"""
