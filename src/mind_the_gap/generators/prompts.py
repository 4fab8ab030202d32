"""Text prompts per image: a plain template, the "Fake it till you make it" recipe, or user templates.

Usage: ``prompts = PromptConfig(...).resolve(class_names)`` once (it checks every class and fills missing
hypernyms), then ``prompts.prompt(class_name, index, seed)`` per image; ``prompts.model_dump()`` belongs in the
run key. Where a choice is made per image (a background, a template) it is taken from the image's seed, so a
prompt depends on nothing but its own image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from string import Formatter
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mind_the_gap.config import Config

PromptFn = Callable[[str, int, int], str]  # (class name, index in class, seed) -> prompt

FITYMI_TEMPLATE = "{name}, {hypernym} inside {background}"  # "c, h_c inside b"
# Scenes for "c, h_c inside b"; FITYMI (Sariyildiz et al., 2023) draws b from the Places365 categories.
DEFAULT_BACKGROUNDS = (
    "a forest",
    "a beach",
    "a kitchen",
    "a street",
    "a living room",
    "a field",
    "a garden",
    "a lake",
    "a mountain",
    "an office",
    "a desert",
    "a park",
    "a river",
    "a snowy field",
    "a city",
    "a barn",
)


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(template) if field is not None}


def _check_template(template: str) -> str:
    try:
        unknown = _fields(template) - {"name", "hypernym"}
    except ValueError as exc:
        raise ValueError(f"prompt template {template!r} is malformed: {exc}") from exc
    if unknown:
        raise ValueError(f"prompt template {template!r} uses {sorted(unknown)}: only {{name}} and {{hypernym}} exist")
    return template


class PromptConfig(Config):
    """How each image's prompt is written (``prompts`` in the parameters)."""

    mode: Literal["plain", "fitymi", "custom"] = "fitymi"
    template: str = "a photo of a {name}"  # plain
    # Name written in the prompt per class, where it differs from the class name (e.g. a WordNet id -> "tench").
    names: dict[str, str] = {}
    # Class name -> hypernym, for fitymi and {hypernym}; missing ones come from WordNet where it is installed.
    hypernyms: dict[str, str] = {}
    backgrounds: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKGROUNDS), min_length=1)  # fitymi
    templates: list[str] | dict[str, list[str]] = []  # custom: one list for every class, or a list per class name

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("templates")
    @classmethod
    def _valid_templates(cls, value: list[str] | dict[str, list[str]]) -> list[str] | dict[str, list[str]]:
        for group in value.values() if isinstance(value, dict) else [value]:
            for template in group:
                _check_template(template)
        return value

    @model_validator(mode="after")
    def _custom_has_templates(self) -> PromptConfig:
        if self.mode == "custom" and not self.templates:
            raise ValueError("prompts.templates must hold at least one template in custom mode")
        return self

    def resolve(self, class_names: Sequence[str]) -> PromptConfig:
        """This config, checked against ``class_names``, with every hypernym its templates need filled in, and only
        the entries of these classes: tables of other classes (another dataset's, merged in from `base`) stay out of
        the run key and the manifest."""
        if self.mode == "custom" and isinstance(self.templates, dict):
            missing = [c for c in class_names if not self.templates.get(c)]
            if missing:
                raise ValueError(f"prompts.templates has no template for class(es) {', '.join(map(repr, missing))}")
        wanted = set(class_names)
        hypernyms = {c: h for c, h in self.hypernyms.items() if c in wanted}
        for class_name in class_names:
            if class_name in hypernyms or not any("hypernym" in _fields(t) for t in self._templates(class_name)):
                continue
            hypernym = _wordnet_hypernym(class_name)
            if hypernym is None:
                raise ValueError(
                    f"no hypernym for class {class_name!r}: add it to prompts.hypernyms "
                    "(or install nltk with its wordnet corpus)"
                )
            hypernyms[class_name] = hypernym
        names = {c: n for c, n in self.names.items() if c in wanted}
        templates = self.templates
        if isinstance(templates, dict):
            templates = {c: t for c, t in templates.items() if c in wanted}
        return self.model_copy(update={"hypernyms": hypernyms, "names": names, "templates": templates})

    def prompt(self, class_name: str, index: int, seed: int) -> str:
        """The prompt of one image; a ``PromptFn`` (``index`` is unused: the seed already identifies the image)."""
        templates = self._templates(class_name)
        template = templates[seed % len(templates)]
        hypernym = self.hypernyms.get(class_name)
        if hypernym is None and "hypernym" in _fields(template):
            raise KeyError(f"no hypernym for class {class_name!r}: call PromptConfig.resolve(class_names) first")
        background = self.backgrounds[seed // len(templates) % len(self.backgrounds)]
        return template.format(name=self.names.get(class_name, class_name), hypernym=hypernym, background=background)

    def _templates(self, class_name: str) -> list[str]:
        if self.mode == "plain":
            return [self.template]
        if self.mode == "fitymi":
            return [FITYMI_TEMPLATE]
        return self.templates[class_name] if isinstance(self.templates, dict) else self.templates


def _wordnet_hypernym(class_name: str) -> str | None:
    """The first hypernym of a class (a WordNet id like n01440764, or a noun) when nltk and its corpus are here."""
    try:
        import nltk
        from nltk.corpus import wordnet

        nltk.data.find("corpora/wordnet")  # never download: the corpus must already be installed
    except (ImportError, LookupError):
        return None
    if re.fullmatch(r"n\d{8}", class_name):
        synset = wordnet.synset_from_pos_and_offset("n", int(class_name[1:]))
    else:
        synsets = wordnet.synsets(class_name.replace(" ", "_"), pos="n")
        synset = synsets[0] if synsets else None
    hypernyms = synset.hypernyms() if synset is not None else []
    return hypernyms[0].lemma_names()[0].replace("_", " ") if hypernyms else None
