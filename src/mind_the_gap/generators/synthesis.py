"""Synthetic training data: a set generated (resumably, each image seeded) per real class, and loaded as tensors."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.files import write_atomically
from mind_the_gap.generators.config import GenerationConfig, build_generator
from mind_the_gap.generators.store import (
    GenerationStats,
    generate_into,
    load_images,
    merge_manifests,
    plan_requests,
    run_key,
    shard_requests,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetShape:
    """What a generated set matches to stand in for the real training set: its classes, channels and side."""

    class_names: tuple[str, ...]
    channels: int
    image_size: int

    @classmethod
    def of(cls, images: ImageSet) -> SetShape:
        return cls(images.class_names, images.channels, images.image_size[0])


def generate_set(
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    shape: SetShape,
    output_dir: Path,
    real_images: ImageSet | None = None,
) -> tuple[pd.DataFrame, GenerationStats]:
    """Generate ``images_per_class`` images of every class of ``shape`` into ``output_dir/<run key>/<class>/``.

    ``real_images``: the real training set that img2img and unCLIP start from; text-to-image reads no real image.
    The run key hashes every parameter that shapes the images (not their number), so a re-run resumes or tops
    up the same folder, and changed parameters start a new one. Returns the manifest, one row per image, with
    files relative to ``output_dir``, and the run's counts and speed.
    """
    generation = generation.for_this_process()
    if generation.uses_real_images and real_images is None:
        raise ValueError(f"generation.backend {generation.backend} starts from real images: pass the real training set")
    class_names = shape.class_names
    generator = build_generator(generation, shape.channels, shape.image_size, _path(generator_model))
    # The offline generator is conditioned on the class itself: its "prompt" is the class name.
    text_conditioned = generator.name != "class_diffusion"
    prompts = generation.prompts.resolve(class_names) if text_conditioned else None
    prompt_fn = prompts.prompt if prompts is not None else (lambda class_name, index, seed: class_name)
    init_images = real_images if generation.uses_real_images else None
    params = {
        "generator": generator.describe(),
        "prompts": prompts.model_dump(mode="json") if prompts is not None else None,
        "seed": generation.seed,
        "class_names": list(class_names),
        "size": [shape.channels, shape.image_size],
        "init_images": init_images.fingerprint() if init_images is not None else None,
    }
    key = run_key(params)
    directory = output_dir / key
    directory.mkdir(parents=True, exist_ok=True)
    params_text = json.dumps(params, indent=2, sort_keys=True)
    write_atomically(directory / "params.json", lambda temp: temp.write_text(params_text))

    requests = plan_requests(class_names, generation.images_per_class, generation.seed, prompt_fn, init_images)
    if generation.shard is not None:
        requests = shard_requests(requests, generation.shard)
    log.info("generating %d images (%s) into %s", len(requests), generator.name, directory)
    stats = generate_into(directory, requests, generator, generation.batch_size, shard=generation.shard or "0/1")
    log.info("%d generated, %d already there, %.1f images/s", stats.generated, stats.skipped, stats.images_per_second)

    manifest = merge_manifests(directory)
    manifest = manifest[manifest["index"] < generation.images_per_class].reset_index(drop=True)
    manifest.insert(0, "run_key", key)
    manifest["file"] = key + "/" + manifest["file"]
    return manifest, stats


def load_set(manifest: pd.DataFrame, output_dir: Path, real_train: ImageSet, generation: GenerationConfig) -> ImageSet:
    """The generated images as tensors at the real data's size and channels, labelled as the real classes.

    Only a complete set is loaded: after a shard's run the other shards' images may still be missing.
    """
    if manifest.empty:
        raise ValueError("the generation manifest is empty: no synthetic images to train on")
    expected = real_train.num_classes * generation.images_per_class
    if len(manifest) < expected:
        raise ValueError(
            f"only {len(manifest)} of {expected} synthetic images are in {output_dir / manifest['run_key'].iloc[0]}: "
            "generate the missing shards, then run the generation pipeline once without generation.shard "
            "(a shard's own run stops after its images with --to-nodes generate_synthetic_images)"
        )
    size, channels = real_train.image_size[0], real_train.channels
    return load_images(output_dir, manifest, size, channels, real_train.class_names)


def _path(generator_model: dict[str, Any]) -> Path | None:
    return Path(generator_model["path"]) if generator_model.get("path") else None
