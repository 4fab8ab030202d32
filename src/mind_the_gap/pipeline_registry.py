"""Every pipeline under pipelines/ by its folder name; the default runs them all in dependency order."""

import importlib
import pkgutil

from kedro.pipeline import Pipeline

import mind_the_gap.pipelines as pipelines_package


def register_pipelines() -> dict[str, Pipeline]:
    # All of them, always (Kedro's find_pipelines loads only those a run asks for): the default pipeline and the
    # check for inputs another pipeline writes (mind_the_gap.hooks) need every one.
    pipelines = {
        module.name: importlib.import_module(f"{pipelines_package.__name__}.{module.name}").create_pipeline()
        for module in pkgutil.iter_modules(pipelines_package.__path__)
        if module.ispkg
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
