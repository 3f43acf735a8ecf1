"""Plain-loop versions of what the inspection core computes, to check it against.

Everything here walks units and weights one at a time over `masks` (task -> layer -> 0/1
values) and the layers' shapes; none of it calls the code under test.
"""

from __future__ import annotations

import itertools


def used_units(layers, masks, tasks) -> dict[str, list[bool]]:
    """Layer -> per unit, whether any of `tasks` keeps it."""
    return {
        lay.name: [any(masks[t][lay.name][u] for t in tasks) for u in range(lay.units)]
        for lay in layers
    }


def protected_params(layers, masks, tasks) -> dict[str, int]:
    """Layer -> parameters protected by the union of `tasks`' masks, weight by weight."""
    used = used_units(layers, masks, tasks)
    counts = {}
    for lay in layers:
        out, fan_in, *kernel = lay.weight_shape
        source = used.get(lay.preceding)
        per_unit = fan_in // len(source) if source else None  # inputs each source unit feeds
        n = 0
        for i, j, *_ in itertools.product(range(out), range(fan_in), *map(range, kernel)):
            n += used[lay.name][i] and (source is None or source[j // per_unit])
        counts[lay.name] = n + (sum(used[lay.name]) if lay.has_bias else 0)
    return counts


def growth(layers, masks, tasks) -> list[dict]:
    """Per task in order: new and reused units, units free before it, params after it."""
    steps = []
    for t, task in enumerate(tasks):
        before = used_units(layers, masks, tasks[:t])
        new = reused = free = 0
        for lay in layers:
            for u in range(lay.units):
                mine = masks[task][lay.name][u]
                new += bool(mine and not before[lay.name][u])
                reused += bool(mine and before[lay.name][u])
                free += not before[lay.name][u]
        protected = sum(protected_params(layers, masks, tasks[: t + 1]).values())
        steps.append(dict(task=task, new=new, reused=reused, free=free, protected=protected))
    return steps


def overlap_counts(layers, masks, tasks) -> tuple[list[list[int]], list[list[int]]]:
    """(shared, union) task x task unit counts summed over `layers`."""
    shared = [[0] * len(tasks) for _ in tasks]
    union = [[0] * len(tasks) for _ in tasks]
    for (a, ta), (b, tb) in itertools.product(enumerate(tasks), repeat=2):
        for lay in layers:
            for u in range(lay.units):
                x, y = masks[ta][lay.name][u], masks[tb][lay.name][u]
                shared[a][b] += bool(x and y)
                union[a][b] += bool(x or y)
    return shared, union


def unit_wise(layers, masks, tasks, of) -> dict[str, list[int]]:
    """The cumulative, summative or one task's ("task:N") measure per unit."""
    if of.startswith("task:"):
        return {lay.name: [int(v) for v in masks[int(of[5:])][lay.name]] for lay in layers}
    reduce = max if of == "cumulative" else sum
    return {
        lay.name: [
            reduce([int(masks[t][lay.name][u]) for t in tasks] or [0]) for u in range(lay.units)
        ]
        for lay in layers
    }


def parameter_wise(layers, masks, tasks, lay, of, aggregation) -> tuple[dict, list | None]:
    """({weight index: measure}, bias measure or None) of layer `lay`, entry by entry."""
    m = unit_wise(layers, masks, tasks, of)
    agg = min if aggregation == "min" else max
    weight = {}
    for index in itertools.product(*map(range, lay.weight_shape)):
        i, j = index[:2]
        if lay.preceding is None:
            weight[index] = m[lay.name][i]
        else:
            source = m[lay.preceding]
            weight[index] = agg(m[lay.name][i], source[j // (lay.fan_in // len(source))])
    return weight, (m[lay.name] if lay.has_bias else None)
