from __future__ import annotations

import sys
import types

import pytest
from pydantic import ValidationError

from mind_the_gap.generators.prompts import DEFAULT_BACKGROUNDS, PromptConfig


def test_plain_prompt_uses_the_display_name():
    prompts = PromptConfig(mode="plain", names={"n01440764": "tench"}).resolve(["n01440764", "dog"])
    assert prompts.prompt("n01440764", 0, 123) == "a photo of a tench"
    assert prompts.prompt("dog", 5, 7) == "a photo of a dog"


def test_fitymi_prompt_follows_the_recipe_and_picks_backgrounds_by_seed():
    prompts = PromptConfig(mode="fitymi", hypernyms={"tench": "fish"}).resolve(["tench"])
    seen = {prompts.prompt("tench", index, seed) for index, seed in enumerate(range(1000, 1100))}
    assert seen == {f"tench, fish inside {background}" for background in DEFAULT_BACKGROUNDS}
    assert prompts.prompt("tench", 0, 42) == prompts.prompt("tench", 9, 42)  # the seed alone decides


def test_fitymi_without_a_hypernym_names_the_class(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # as if nltk were not installed
    config = PromptConfig(mode="fitymi", hypernyms={"tench": "fish"})
    with pytest.raises(ValueError, match="no hypernym for class 'goldfish'"):
        config.resolve(["tench", "goldfish"])
    with pytest.raises(KeyError, match="goldfish"):
        config.prompt("goldfish", 0, 0)  # not resolved


def test_fitymi_falls_back_to_a_local_wordnet(monkeypatch: pytest.MonkeyPatch):
    def synset(*lemmas: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(lemma_names=lambda: list(lemmas), hypernyms=lambda: [])

    def with_parent(parent: types.SimpleNamespace) -> types.SimpleNamespace:
        return types.SimpleNamespace(hypernyms=lambda: [parent])

    wordnet = types.SimpleNamespace(
        synsets=lambda name, pos: [with_parent(synset("domestic_dog", "dog"))] if name == "golden_retriever" else [],
        synset_from_pos_and_offset=lambda pos, offset: with_parent(synset("cyprinid")),
    )
    nltk = types.ModuleType("nltk")
    nltk.data = types.SimpleNamespace(find=lambda resource: resource)
    corpus = types.ModuleType("nltk.corpus")
    corpus.wordnet = wordnet
    nltk.corpus = corpus
    monkeypatch.setitem(sys.modules, "nltk", nltk)
    monkeypatch.setitem(sys.modules, "nltk.corpus", corpus)

    prompts = PromptConfig(mode="fitymi", backgrounds=["a lake"]).resolve(["golden retriever", "n01440764"])
    assert prompts.hypernyms == {"golden retriever": "domestic dog", "n01440764": "cyprinid"}
    assert prompts.prompt("golden retriever", 0, 3) == "golden retriever, domestic dog inside a lake"
    with pytest.raises(ValueError, match="'unicorn'"):
        PromptConfig(mode="fitymi").resolve(["unicorn"])


def test_custom_templates_global_and_per_class():
    shared = PromptConfig(mode="custom", templates=["{name}", "a drawing of a {name}"]).resolve(["cat"])
    assert {shared.prompt("cat", 0, seed) for seed in range(10)} == {"cat", "a drawing of a cat"}

    per_class = PromptConfig(
        mode="custom",
        templates={"cat": ["a {hypernym} called {name}"], "car": ["a red {name}"]},
        hypernyms={"cat": "feline"},
    ).resolve(["cat", "car"])
    assert per_class.prompt("cat", 0, 1) == "a feline called cat"
    assert per_class.prompt("car", 0, 1) == "a red car"
    with pytest.raises(ValueError, match="'dog'"):
        PromptConfig(mode="custom", templates={"cat": ["{name}"]}).resolve(["cat", "dog"])


def test_resolving_keeps_only_the_classes_asked_for():
    merged = PromptConfig(
        hypernyms={"cat": "feline", "trouser": "garment"},
        names={"trouser": "trousers"},
        mode="custom",
        templates={"cat": ["{name}"], "trouser": ["{name}"]},
    )
    resolved = merged.resolve(["cat"])
    assert resolved.hypernyms == {"cat": "feline"}
    assert resolved.names == {}
    assert resolved.templates == {"cat": ["{name}"]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "custom"}, "at least one template"),
        ({"mode": "custom", "templates": ["a {colour} {name}"]}, "colour"),
        ({"template": "a {name"}, "malformed"),
        ({"backgrounds": []}, "backgrounds"),
        ({"mode": "fancy"}, "mode"),
    ],
)
def test_bad_configs_are_named(fields: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        PromptConfig(**fields)
