"""How a run's fits are grouped and batched.

Fits whose arrays have the same shapes form a group and share one compiled step. Within a group
the ``vmap`` strategy stacks fits on a leading axis (sharded over the devices), in batches as
large as the memory estimate (or ``max_batch``) allows; ``sequential`` runs them one after
another on one compiled step; ``measure`` times one chunk of each on the group's first batch and
keeps the faster per fit-iteration.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from dipjax import build, memory
from dipjax.io import InputError
from dipjax.step import compiled_chunk, default_chunk

STRATEGIES = ("auto", "vmap", "sequential", "measure")


@dataclasses.dataclass
class Batch:
    """Fits run together: ``group`` (index into the plan's groups), ``fits`` as (problem index,
    seed) pairs, ``stack``: vmapped (True) or one fit alone (False)."""

    group: int
    fits: list
    stack: bool


def resolve_strategy(strategy: str) -> str:
    """'auto' is 'sequential' on a CPU and 'measure' elsewhere."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        # A vmapped step on the CPU (its convolutions as batched matrix products) runs at
        # 0.79x (64 px) to 1.04x (128 px) the throughput of 4 separate fits (README,
        # bench_batching.py); on GPUs vmapping pays at small images and loses at large ones,
        # so there it is measured.
        return "sequential" if jax.default_backend() == "cpu" else "measure"
    return strategy


def group_key(problem) -> tuple:
    """Problems with equal keys can share one compiled step."""
    shape = lambda a: None if a is None else tuple(np.shape(a))
    return (
        problem.task,
        problem.measure,
        shape(problem.target),
        tuple(problem.out_hw),
        shape(problem.mask),
        shape(problem.gt),
        shape(problem.net_image),
        problem.channels,
    )


def group_problems(problems: Sequence) -> list:
    """Lists of indices of ``problems`` with the same shapes, in order of first appearance."""
    groups: dict = {}
    for i, p in enumerate(problems):
        groups.setdefault(group_key(p), []).append(i)
    return list(groups.values())


def plan(
    problems,
    preset,
    fits: Sequence[tuple],
    strategy: str,
    *,
    max_batch: int = 0,
    devices=None,
    chunk: int = 0,
    caches: Optional[dict] = None,
    say: Optional[Callable] = None,
):
    """Batches for ``fits`` ((problem index, seed) pairs, in run order). Returns (groups,
    batches, chosen strategy per group, notes); ``caches`` (group index -> compiled chunks)
    keeps what ``measure`` compiled for the real run."""
    strategy = resolve_strategy(strategy)
    devices = list(devices if devices is not None else jax.local_devices())
    groups = group_problems(problems)
    caches = {} if caches is None else caches
    batches, chosen, notes = [], [], []
    note = lambda line: (notes.append(line), say and say(line))
    for g, group in enumerate(groups):
        todo = [f for f in fits if f[0] in group]
        how = strategy
        if how == "measure":
            how = (
                "sequential"
                if len(todo) <= 1
                else _measure(
                    problems,
                    preset,
                    todo,
                    max_batch,
                    chunk,
                    devices,
                    caches.setdefault(g, {}),
                    note,
                )
            )
        chosen.append(how)
        if not todo:
            continue
        if how == "sequential":
            batches += [Batch(g, [f], False) for f in todo]
            continue
        size = _batch_size(problems[todo[0][0]], preset, len(todo), max_batch, len(devices))
        parts = [todo[k : k + size] for k in range(0, len(todo), size)]
        if len(parts) > 1:
            h, w = problems[todo[0][0]].out_hw
            why = "--max-batch" if max_batch else "memory estimate"
            note(
                f"{len(todo)} fits of size {w}x{h} run in {len(parts)} batches of up to {size} "
                f"({why})"
            )
        batches += [Batch(g, part, True) for part in parts]
    return groups, batches, chosen, notes


def _batch_size(problem, preset, n_fits: int, max_batch: int, n_devices: int) -> int:
    if not max_batch:
        net, z, _ = build.problem_arrays(problem, preset, 0)
        max_batch = memory.fits_at_once(net, z.shape, problem, preset, n_devices)
    return max(1, min(max_batch, n_fits))


def _measure(problems, preset, fits, max_batch, chunk, devices, cache, note) -> str:
    """Time one chunk (after a warm-up chunk) of a single fit and of the group's first vmapped
    batch, on throwaway states; the compiled chunks stay in ``cache`` for the real run."""
    k = _batch_size(problems[fits[0][0]], preset, len(fits), max_batch, len(devices))
    n = max(1, min(chunk or default_chunk(), preset.iters))
    one = build.setup(problems, preset, fits[:1], devices=[devices[0]])
    t1 = seconds_per_step(one, n, cache)
    many = build.setup(problems, preset, fits[:k], stack=True, devices=devices)
    tk = seconds_per_step(many, n, cache) / k
    how = "vmap" if tk < t1 else "sequential"
    h, w = problems[fits[0][0]].out_hw
    note(
        f"measured at {w}x{h}: {k} vmapped fits {tk * 1e3:.1f} ms per fit-step, one fit "
        f"{t1 * 1e3:.1f} ms; running {how}"
    )
    return how


def seconds_per_step(su, n: int, cache: dict) -> float:
    """Seconds per step of a chunk of ``n`` steps of a Setup, timed after a warm-up chunk."""
    import time

    run, _ = compiled_chunk(
        su.step, n, su.state, su.batch, batch_axes=su.axes, mesh=su.mesh, cache=cache
    )
    state = su.state
    for _ in range(2):
        t = time.perf_counter()
        state, m = run(state, su.batch)
        jax.block_until_ready(m)
    return (time.perf_counter() - t) / n
