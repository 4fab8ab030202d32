from mind_the_gap.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
