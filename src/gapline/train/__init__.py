"""Fitting a model: the loop, phases (fine-tuning a backbone), resume from a backup, progress
lines, warm starts and the Keras callbacks (``callbacks`` imports Keras at module level, so
only the loop imports it, lazily)."""
