"""Accuracy of averaging 3 best_practice models' test probabilities (seeds s..s+2) against the
single models, from the p<seed>.npy / y.npy files ensemble_probe.py writes to /tmp/ens."""
import numpy as np

y = np.load("/tmp/ens/y.npy")
p = {s: np.load(f"/tmp/ens/p{s}.npy") for s in range(42, 49)}
single = [(p[s].argmax(1) == y).mean() for s in range(42, 47)]
ens = [(sum(p[s + i] for i in range(3)).argmax(1) == y).mean() for s in range(42, 47)]
print("single 42-46", np.round(np.array(single) * 100, 2), f"mean {np.mean(single) * 100:.2f}")
print("ens3 (s..s+2)", np.round(np.array(ens) * 100, 2), f"mean {np.mean(ens) * 100:.2f}")
