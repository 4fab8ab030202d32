from mind_the_gap.pipelines.generator_training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
