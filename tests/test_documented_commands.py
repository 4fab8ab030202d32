"""Every `kedro run` the README and the docs show parses as Kedro's CLI parses it and names what exists: its
environment, pipelines, nodes and runner, and parameters that still validate once merged in. A command a person
copies must run; Kedro's `--params`, for one, splits at every comma, lists included."""

from __future__ import annotations

import functools
import importlib
import re
import shlex
import typing
from pathlib import Path

import pytest
from kedro.framework.cli.project import run
from omegaconf import OmegaConf

from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.runners.estimate import environment_parameters
from tests.test_paper_configuration import parameter_models

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/methods.md", "docs/architecture.md", "benchmarks/README.md"]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`]*\bkedro run\b[^`]*)`")
COMMAND = re.compile(r"^(?:\w+=\S+ )*(kedro run\b.*)")  # a command, after any environment variables it sets
# The run config file the README shows inline for lists of several values.
RUN_CONFIG = re.compile(r"`(run: \{.*?\})` in `run\.yml`")


def documented_commands(text: str) -> list[str]:
    """The `kedro run` commands of a Markdown text: the lines of its fenced blocks and its inline code that are one
    (a message or a comment that quotes one is not), templates (`<file>`, `...`) and mentions of an option without
    its value left out."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    spans = INLINE.findall(FENCE.sub("", text))
    found = [COMMAND.match(re.sub(r"\s+", " ", item).strip()) for item in lines + spans]
    commands = [match.group(1) for match in found if match]
    return [c for c in commands if not re.search(r"<|\.\.\.|--[a-z-]+$", c.split("#")[0].strip())]


def test_the_extraction_finds_fenced_and_inline_commands_and_skips_templates():
    text = (
        "Run `kedro run --env\nfull` or:\n```bash\nX=1 kedro run --pipeline a   # one\nls\n```\n"
        "then `kedro run --config` on a file, `MEM=<file> kedro run ...`, `failed: run kedro run first`.\n"
        "```bash\nmake demo   # `kedro run` of every pipeline\n```\n"
    )
    assert documented_commands(text) == ["kedro run --pipeline a # one", "kedro run --env full"]


@pytest.fixture(scope="module")
def pipelines() -> dict[str, typing.Any]:
    return register_pipelines()


@pytest.fixture(scope="module")
def models() -> dict[str, typing.Any]:
    return parameter_models()


@pytest.fixture(scope="module")
def parameters() -> typing.Callable[[str], dict[str, typing.Any]]:
    return functools.cache(lambda env: environment_parameters(REPO / "conf", env))


def commands() -> list[tuple[str, str]]:
    found = [(name, c) for name in DOCUMENTS for c in documented_commands((REPO / name).read_text())]
    assert len(found) >= 20, found  # the extraction still finds the README's and the docs' commands
    return found


@pytest.mark.parametrize(("document", "command"), commands())
def test_each_documented_kedro_run_parses_and_names_what_exists(
    document: str, command: str, pipelines, models, parameters, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    arguments = shlex.split(command, comments=True)[2:]
    if "--config" in arguments:  # the README's inline run.yml, written where the command reads it
        (tmp_path / "run.yml").write_text(RUN_CONFIG.search((REPO / "README.md").read_text()).group(1))
        monkeypatch.chdir(tmp_path)
    options = run.make_context("run", arguments).params
    env = options["env"] or "base"
    assert (REPO / "conf" / env).is_dir(), f"{command}: no environment {env}"
    names = [options["pipeline"] or "__default__", *options["pipelines"]]
    assert [name for name in names if name not in pipelines] == [], command
    nodes = {node.name for name in names for node in pipelines[name].nodes}
    named = options["node_names"] + options["to_nodes"] + options["from_nodes"]
    assert [name for name in named if name not in nodes] == [], command
    if options["runner"]:
        module, _, attribute = options["runner"].rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), command
    merged = OmegaConf.to_container(OmegaConf.merge(parameters(env), options["params"] or {}))
    for key, model in models.items():
        model.model_validate(merged[key])


def test_a_list_of_several_values_in_params_is_what_kedro_refuses():
    """Why the README gives lists in a run config file: the parse this test file relies on fails on them."""
    with pytest.raises(Exception, match="must contain a key and a value"):
        run.make_context("run", ["--params", "layer_swap.cuts=[3,7,8]"])
