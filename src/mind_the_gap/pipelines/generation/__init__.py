from mind_the_gap.pipelines.generation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
