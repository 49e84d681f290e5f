"""The regularization study: which technique actually closes the gap on this data?

Every arm (a name and its Hydra overrides, from ``study.arms``) trains on the same split with
the same seeds. An arm with a grid in ``study.search`` is tuned first: one trial per grid point
at the first seed, the best on validation (``study.objective``) kept, and only then its seeds.
Each arm is compared with the baseline, paired by seed (a t-interval per arm, a paired t-test
Holm-corrected over the arms). Classical baselines (per task: RBF SVC, logistic regression and
gradient boosting; one-vs-rest logistic regression; ridge and gradient boosting) and a learning
curve put the numbers in perspective. The table follows the task's headline metric (accuracy,
AUC, RMSE). Jobs run in parallel (joblib processes); each training run is cached under
``<out_dir>/jobs/`` keyed by its resolved config and seed, so an interrupted study re-run only
trains what is missing, and jobs that are the same run (a tuned arm's first seed and its
winning trial) train once.

``plan`` (the jobs, the grids and the cache key), ``tuning`` (choosing a grid point),
``baselines`` (the classical rows), ``table`` (the summary, its statistics and its files),
``run`` (training what is missing). MLflow: ``gapline.experiments.trial_logging``.
"""

from gapline.experiments.study.run import StudyResult, run_study

__all__ = ["StudyResult", "run_study"]
