"""Helpers the test modules share, one small module each: a sandbox copy of the project, the
processes it runs, a real ``mlflow server``, the checks every logged pipeline run must pass,
headless Chromium, and a prepared folder's meta built without data.

Not test modules and not conftest: ``tests/`` is on ``sys.path`` (pytest's ``pythonpath``
option), so tests import ``from helpers.sandbox import copy_project``.
"""
