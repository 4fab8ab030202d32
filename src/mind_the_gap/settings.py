"""Project settings: Kedro reads them before anything else."""

from kedro.config import OmegaConfigLoader

from mind_the_gap.hooks import MemoryHook, MissingInputsHook, RunTimesHook, StudentProgressHook
from mind_the_gap.runners.dask import DASK_HOOK

# Pluggy calls the last registered first: RunTimesHook writes the run's times before MissingInputsHook sets the
# report's inputs that are not on disk to None; the run's students are counted last, once no hook stopped the run.
HOOKS = (StudentProgressHook(), MissingInputsHook(), RunTimesHook(), DASK_HOOK, MemoryHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # An environment (smoke, paper) lists only the parameters and MLflow settings it changes; the rest comes from base.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}
