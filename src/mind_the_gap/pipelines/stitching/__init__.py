from mind_the_gap.pipelines.stitching.pipeline import create_pipeline

__all__ = ["create_pipeline"]
