from mind_the_gap.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
