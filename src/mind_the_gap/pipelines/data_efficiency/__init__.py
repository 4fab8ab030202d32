from mind_the_gap.pipelines.data_efficiency.pipeline import create_pipeline

__all__ = ["create_pipeline"]
