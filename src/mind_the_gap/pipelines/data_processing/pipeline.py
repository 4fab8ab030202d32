from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.data_processing.nodes import (
    describe_real_data,
    draw_real_samples,
    measure_real_statistics,
    prepare_real_data,
)

REAL_SETS = ["real_generator_pool", "real_train", "real_val", "real_test"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(prepare_real_data, "params:dataset", REAL_SETS, name="prepare_real_data"),
            Node(describe_real_data, REAL_SETS, "real_data_summary", name="describe_real_data"),
            Node(measure_real_statistics, "real_train", "real_statistics", name="measure_real_statistics"),
            Node(draw_real_samples, "real_train", "real_samples", name="draw_real_samples"),
        ]
    )
