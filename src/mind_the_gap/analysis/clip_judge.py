"""A zero-shot CLIP judge (Radford et al., 2021): how sure CLIP is that an image shows its class, the score He et al.
(2023) filter synthetic training images by. Its weights load through ``from_pretrained``, from a Hub id or a folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import HFValidationError

from mind_the_gap.data.imageset import ImageSet

# CLIP's input normalisation (OpenAI's training statistics), as its image processor applies it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT = "a photo of a {name}"  # CLIP's own zero-shot ImageNet prompt, one template


def clip_weights_present(model_id: str) -> bool:
    """Whether ``model_id`` (a folder, or a Hub id already in the local cache) holds a model to load offline."""
    if Path(model_id).is_dir():
        return (Path(model_id) / "config.json").is_file()
    try:
        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except HFValidationError:  # a path to no folder
        return False


class ClipJudge:
    """CLIP and its text embedding of each class's prompt, on ``device``: ``confidence`` scores images."""

    def __init__(self, model_id: str, names: Sequence[str], device: torch.device, batch_size: int = 256):
        from transformers import CLIPModel, CLIPTokenizer  # slow to import: only where a CLIP judge is used

        self.model = CLIPModel.from_pretrained(model_id).to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.side = self.model.config.vision_config.image_size
        tokenizer = CLIPTokenizer.from_pretrained(model_id)
        tokens = tokenizer([PROMPT.format(name=name) for name in names], padding=True, return_tensors="pt")
        with torch.no_grad():
            text = _embedding(self.model.get_text_features(**tokens.to(device)))
        self.text = F.normalize(text.float(), dim=-1)
        self.scale = self.model.logit_scale.exp().float()

    @torch.no_grad()
    def confidence(self, images: ImageSet) -> torch.Tensor:
        """CLIP's softmax probability, over the classes' prompts, of each image's own class (float32, on the CPU)."""
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        scores = []
        for chunk, labels in zip(images.chunks(self.batch_size), images.labels.split(self.batch_size), strict=True):
            pixels = chunk.to(self.device).float().div_(255).expand(-1, 3, -1, -1)  # grey images as RGB
            pixels = F.interpolate(pixels, size=(self.side, self.side), mode="bicubic", align_corners=False)
            pixels = ((pixels.clamp_(0, 1) - mean) / std).to(self.model.dtype)
            features = F.normalize(_embedding(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
            probabilities = (self.scale * features @ self.text.T).softmax(1).cpu()
            scores.append(probabilities.gather(1, labels[:, None]).squeeze(1))
        return torch.cat(scores) if scores else torch.zeros(0)


def save_tiny_clip(directory: Path, image_size: int = 32) -> Path:
    """A CLIP model with random weights and a few kilobytes of vocabulary, saved like a downloaded one: for tests."""
    from transformers import CLIPConfig, CLIPModel

    from mind_the_gap.generators.diffusers_backends import tiny_clip_tokenizer

    directory = Path(directory)
    tokenizer = tiny_clip_tokenizer(directory / "vocab")
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    text = {"vocab_size": len(tokenizer), "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1} | layers
    vision = {"image_size": image_size, "patch_size": 8} | layers
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _embedding(output: torch.Tensor | object) -> torch.Tensor:
    """The projected embedding: transformers 4 returns it, transformers 5 an output holding it as ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
