"""Hydra imports every module under ``hydra_plugins`` when it starts, in any process.

That is the only hook gapline has inside DVC's own composition (``dvc exp run -S``), which
never imports gapline: registering the schema and the conf/ digest resolver here makes DVC's
params.yaml as typed and as stamped as ``gapline params`` makes it.
"""

from gapline.config.params import register_resolver
from gapline.config.schema import register_schema

register_schema()
register_resolver()
