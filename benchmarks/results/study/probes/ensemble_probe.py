import sys

import numpy as np

from gapline.config.params import compose_config, find_root
from gapline.data.prepare import split_source
from gapline.experiments.trial import run_trial

root = find_root()
seed = int(sys.argv[1])
cfg = compose_config(["experiment=study", "tracking=off", "regularization=best_practice", "augment=offline_strong",
                      "model=cnn", "train.ema=0.999", f"train.seed={seed}", "train.threads=1"], root)
arrays, meta = split_source(cfg)
r = run_trial(cfg, keep_model=True)
p = np.asarray(r.model.predict(arrays["test"]["x"], verbose=0))
np.save(f"/tmp/ens/p{seed}.npy", p)
np.save("/tmp/ens/y.npy", arrays["test"]["y"])
print(seed, r.metrics["test_accuracy"], (p.argmax(1) == arrays["test"]["y"]).mean(), r.metrics["train_accuracy"])
