"""benchmarks/bench_gpu.py: its smoke run, the committed model configurations and its narrow student."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mind_the_gap.models.architectures import StudentConfig, build_student

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
GENERATION_KEYS = ("stable_diffusion_v1_4_512", "img2img_512", "unclip_768")


@pytest.fixture(scope="module")
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_smoke_run_writes_every_figure_to_the_json(tmp_path):
    out = tmp_path / "gpu_throughput.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads would only contend with other work
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert sum("images/s" in line for line in run.stdout.splitlines()) == 5  # one line per measurement

    results = json.loads(out.read_text())
    assert results["smoke"] is True
    assert isinstance(results["device"], str)
    assert results["torch"] == torch.__version__
    assert results["resnet50_224"]["eager_images_per_second"] > 0
    assert results["resnet50_224"]["compiled_images_per_second"] is None  # smoke runs compile nothing
    assert results["resnet50_224"]["batch_size"] == 2
    assert results["narrow_28"]["images_per_second"] > 0
    for key in GENERATION_KEYS:
        assert results[key]["images_per_second"] > 0, key
        assert results[key]["steps"] == 2, key
    assert results["img2img_512"]["strength"] == 0.75
    assert results["parameters_millions"]["stable-diffusion-v1-4"]["unet"] == pytest.approx(859.52)


def test_committed_configurations_build_the_published_models(bench_gpu):
    published = {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863}  # SD v1.4, as released
    with torch.device("meta"):
        built = {name: bench_gpu.build_component(bench_gpu.CONFIGS, bench_gpu.SD, name) for name in published}
    assert {name: bench_gpu.count_parameters(model) for name, model in built.items()} == published
    assert built["text_encoder"].config.hidden_size == 768  # CLIP ViT-L/14's, not the library default's 512
    counts = bench_gpu.check_parameter_counts()
    assert counts["stable-diffusion-2-1-unclip"]["image_encoder"] == pytest.approx(632.08)


def test_a_configuration_that_is_not_the_published_one_fails_naming_it(bench_gpu, tmp_path):
    configs = shutil.copytree(bench_gpu.CONFIGS, tmp_path / "configs")
    text_encoder = configs / "stable-diffusion-v1-4" / "text_encoder" / "config.json"
    config = json.loads(text_encoder.read_text())
    text_encoder.write_text(
        json.dumps(config | {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8})
    )
    with pytest.raises(ValueError, match=r"text_encoder of 6\d\.\d M parameters, but the published .* 123\.1 M"):
        bench_gpu.check_parameter_counts(configs)


def test_a_missing_configuration_fails_naming_it(bench_gpu, tmp_path):
    configs = shutil.copytree(bench_gpu.CONFIGS, tmp_path / "configs")
    shutil.rmtree(configs / "stable-diffusion-2-1-unclip" / "image_encoder")
    with pytest.raises(FileNotFoundError, match="stable-diffusion-2-1-unclip image_encoder"):
        bench_gpu.check_parameter_counts(configs)


def test_narrow_student_is_the_projects_default_student(bench_gpu):
    ours = bench_gpu.narrow_student()
    project = build_student(StudentConfig(), num_classes=10, in_channels=1, image_size=28)
    assert [t.shape for t in ours.state_dict().values()] == [t.shape for t in project.state_dict().values()]


def test_script_imports_only_torch_diffusers_transformers_and_the_standard_library():
    allowed = {"torch", "torchvision", "diffusers", "transformers", "PIL", *sys.stdlib_module_names}
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert {name.split(".")[0] for name in imported} <= allowed
