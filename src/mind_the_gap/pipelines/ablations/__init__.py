from mind_the_gap.pipelines.ablations.pipeline import create_pipeline

__all__ = ["create_pipeline"]
