from mind_the_gap.pipelines.normalization.pipeline import create_pipeline

__all__ = ["create_pipeline"]
