"""Scoring a model: the gap on a train subset, metrics per task, whole splits a batch at a
time, the diagnosis, the curves DVCLive writes and the plots. Below ``train``: the gap
callback scores with these functions while the model fits."""
