"""Many fits at once: one trial (the same fit and score the train stage runs, in memory), the
Hydra sweep of trials, the regularization study and the learning curve."""
