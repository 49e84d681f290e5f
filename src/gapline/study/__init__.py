"""The regularization study: which technique actually closes the gap on this data?

Every arm (a name and its Hydra overrides, from ``study.arms``) trains on the same split with
the same seeds; classical baselines (per task: RBF SVC and logistic regression, one-vs-rest
logistic regression, ridge and gradient boosting) and a learning curve put the numbers in
perspective. The table follows the task's headline metric (accuracy, AUC, RMSE). Jobs run in parallel (joblib processes), each result is cached
under ``<out_dir>/jobs/`` keyed by its resolved config, so an interrupted study re-run only
trains what is missing.

``plan`` (the jobs and their cache keys), ``baselines`` (the classical rows), ``table`` (the
summary and its files), ``run`` (training what is missing). MLflow: ``gapline.trial_logging``.
"""

from .run import StudyResult, run_study

__all__ = ["StudyResult", "run_study"]
