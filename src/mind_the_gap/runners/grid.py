"""A pipeline as a graph of cells, the unit a distributed runner schedules: the nodes of one namespace (an
experiment's grid cell, such as ``layer_swap.prefix_from_real``), or one node outside any namespace.

A node tagged ``per_cell`` (a cheap builder of an in-memory object, such as the study every student shares) is no
cell of its own: it runs in each cell that reads what it builds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from kedro.io import MemoryDataset
from kedro.pipeline import Node, Pipeline

PER_CELL = "per_cell"


@dataclass(frozen=True)
class Cell:
    """Nodes run together, in one `kedro run --nodes`, after the cells they read from (``upstream``)."""

    name: str
    nodes: tuple[str, ...]
    upstream: tuple[str, ...]


def grid_cells(pipeline: Pipeline) -> list[Cell]:
    """The cells of ``pipeline`` in an order where each comes after its upstream cells.

    Nodes share a cell when they share their namespace. Where that would make two cells wait on each other (a
    namespace whose nodes read and feed another cell's), that namespace's nodes become cells of their own.
    """
    builders = {node for node in pipeline.nodes if PER_CELL in node.tags}
    dependencies = pipeline.node_dependencies

    def waits_for(node: Node) -> set[Node]:
        """The scheduled nodes ``node`` reads from, through any builders in between."""
        return set().union(*(waits_for(p) if p in builders else {p} for p in dependencies[node]))

    def builders_of(node: Node) -> set[Node]:
        """The builders whose outputs ``node`` reads, directly or through other builders."""
        direct = dependencies[node] & builders
        return direct.union(*(builders_of(b) for b in direct))

    scheduled = [node for node in pipeline.nodes if node not in builders]  # Kedro's order
    split: set[str] = set()
    while True:
        cell_of = {node: _cell_name(node, split) for node in scheduled}
        upstream: dict[str, set[str]] = {name: set() for name in cell_of.values()}
        for node in scheduled:
            upstream[cell_of[node]] |= {cell_of[parent] for parent in waits_for(node)} - {cell_of[node]}
        try:
            order = list(TopologicalSorter(upstream).static_order())
        except CycleError as cycle:
            split |= {name for name in cycle.args[1] if name in {n.namespace for n in scheduled}}
            continue
        members: dict[str, list[str]] = {name: [] for name in order}
        for node in pipeline.nodes:  # Kedro's order: each node after those it reads from
            if node in builders:
                for name in {cell_of[n] for n in scheduled if node in builders_of(n)}:
                    members[name].append(node.name)
            else:
                members[cell_of[node]].append(node.name)
        return [Cell(name, tuple(members[name]), tuple(sorted(upstream[name]))) for name in order]


def _cell_name(node: Node, split: set[str]) -> str:
    return node.name if node.namespace is None or node.namespace in split else node.namespace


def memory_handoffs(pipeline: Pipeline, cells: Iterable[Cell], catalog) -> list[str]:
    """The datasets one cell would hand another in memory; each cell runs in its own process, so every dataset
    that crosses cells must be saved by the catalog."""
    cells_of: dict[str, set[str]] = {}
    for cell in cells:
        for node in cell.nodes:
            cells_of.setdefault(node, set()).add(cell.name)
    crossing = sorted(
        {
            dataset
            for node in pipeline.nodes
            for dataset in node.outputs
            for reader in pipeline.only_nodes_with_inputs(dataset).nodes
            if not cells_of[reader.name] <= cells_of[node.name]
        }
    )
    return [name for name in crossing if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)]
