"""Data loading, validation, splitting and fingerprinting.

Kept free of TensorFlow/Keras (and of eager pandas/PIL imports) so that the CLI and the
data stages start fast. Import the submodules directly: ``gapline.data.sources``,
``gapline.data.split``, ``gapline.data.fingerprint``.
"""
