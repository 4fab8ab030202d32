from mind_the_gap.pipelines.baselines.pipeline import create_pipeline

__all__ = ["create_pipeline"]
