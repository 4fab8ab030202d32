from mind_the_gap.pipelines.layer_swap.pipeline import create_pipeline

__all__ = ["create_pipeline"]
