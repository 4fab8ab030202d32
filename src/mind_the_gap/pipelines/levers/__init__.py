from mind_the_gap.pipelines.levers.pipeline import create_pipeline

__all__ = ["create_pipeline"]
