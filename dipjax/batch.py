"""Many fits at once: several problems (images) times several seeds.

Fits whose arrays have the same shapes form a group and share one compiled step. Within a group
the ``vmap`` strategy stacks parameters, optimizer state and every batch array on a leading fit
axis, shards that axis over the devices (a 1-D ``jax.sharding.Mesh``, ``NamedSharding``; the
fit count is padded to a multiple of the device count and the padding dropped), and splits the
group into sequential batches when the memory estimate says they would not fit. The
``sequential`` strategy runs the group's fits one after another on one compiled step. Each fit
gives the same result as ``api.fit`` with its seed (up to float reassociation under vmap).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dipjax import api, memory
from dipjax.presets import Preset
from dipjax.step import default_chunk, init_state, make_optimizer, run_chunks

STRATEGIES = ("auto", "vmap", "sequential", "measure")


@dataclasses.dataclass
class FitOutcome:
    """One fit of a batch: ``problem`` (index into the problems given) and ``seed``; outputs
    (H, W, C) in [0, 1]; history: one dict per iteration; final: ``api.final_metrics`` (plus
    ``psnr_gt_es``); early_stop: as ``FitResult.early_stop``."""

    problem: int
    seed: int
    output: np.ndarray
    output_avg: np.ndarray
    history: list
    final: dict
    early_stop: Optional[dict] = None
    interrupted: bool = False
    compile_s: float = 0.0
    step_s: float = float("nan")


@dataclasses.dataclass
class BatchReport:
    """How the fits ran: strategy, groups (lists of problem indices), batch sizes per group,
    devices, compile seconds (all groups) and median seconds per fit-iteration."""

    strategy: str
    groups: list
    batches: list
    devices: int
    compile_s: float
    step_s: float
    notes: list


def resolve_strategy(strategy: str) -> str:
    """'auto' is 'sequential' on a CPU and 'measure' elsewhere. 'measure' times one chunk of
    both strategies on each group's first batch and keeps the faster per fit-iteration."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        # A vmapped step on the CPU (its convolutions as batched matrix products) runs at
        # 0.75-0.91x the throughput of separate fits (README, bench_batching.py); on GPUs
        # vmapping pays at small images and loses at large ones, so there it is measured.
        return "sequential" if jax.default_backend() == "cpu" else "measure"
    return strategy


def group_key(problem) -> tuple:
    """Problems with equal keys can share one compiled step."""
    shape = lambda a: None if a is None else tuple(np.shape(a))
    return (problem.task, problem.measure, shape(problem.target), tuple(problem.out_hw),
            shape(problem.mask), shape(problem.gt), shape(problem.net_image), problem.channels)


def group_problems(problems: Sequence) -> list:
    """Lists of indices of ``problems`` with the same shapes, in order of first appearance."""
    groups: dict = {}
    for i, p in enumerate(problems):
        groups.setdefault(group_key(p), []).append(i)
    return list(groups.values())


def fit_many(problems: Sequence, preset: Preset, seeds: Sequence[int], *,
             strategy: str = "auto", chunk: int = 0, max_batch: int = 0, devices=None,
             on_chunk: Optional[Callable] = None, on_batch: Optional[Callable] = None,
             say: Optional[Callable] = None):
    """Fit every problem once per seed. Returns (outcomes, report); outcomes are ordered by
    problem, then seed.

    ``devices``: where the vmapped fits are sharded (default: all local devices).
    ``max_batch``: most fits per vmapped batch (0: as many as the memory estimate allows).
    ``on_chunk(done, total, last_metrics)`` as in ``api.fit`` (True stops the current batch and
    skips the rest); ``on_batch(outcomes)`` is called as each batch finishes (write outputs as
    they come); ``say(line)`` gets each note (a group split into batches) before it runs."""
    strategy = resolve_strategy(strategy)
    seeds = list(seeds)
    devices = list(devices if devices is not None else jax.local_devices())
    groups = group_problems(problems)
    outcomes, batches, compile_s, per_step, notes = {}, [], 0.0, [], []
    stopped = False
    chosen = []
    for group in groups:
        fits = [(i, s) for i in group for s in seeds]
        how = strategy
        cache: dict = {}
        if how == "measure":
            how = "sequential" if len(fits) == 1 else _measure(
                problems, preset, fits, max_batch, chunk, devices, cache, notes, say)
        chosen.append(how)
        if how == "sequential":
            sizes = [1] * len(fits)
        else:
            size = _batch_size(problems[group[0]], preset, len(fits), max_batch, len(devices))
            sizes = [min(size, len(fits) - k) for k in range(0, len(fits), size)]
            if len(sizes) > 1:
                notes.append(f"{len(fits)} fits of size {problems[group[0]].out_hw[1]}x"
                             f"{problems[group[0]].out_hw[0]} run in {len(sizes)} batches of "
                             f"up to {size} (" + ("--max-batch" if max_batch else
                                                  "memory estimate") + ")")
                if say:
                    say(notes[-1])
        batches.append(sizes)
        start = 0
        for n in sizes:
            todo = fits[start: start + n]
            start += n
            if stopped:
                break
            if how == "sequential":
                (i, s), = todo
                r = api.fit(problems[i], preset, seed=s, chunk=chunk, on_chunk=on_chunk,
                            compiled=cache)
                got = [FitOutcome(i, s, r.output, r.output_avg, r.history, r.final,
                                  r.early_stop, r.interrupted, r.compile_s, r.step_s)]
                compile_s += r.compile_s
                per_step.append(r.step_s)
            else:
                got = _fit_vmapped(problems, preset, todo, chunk, devices, on_chunk, cache)
                compile_s += got[0].compile_s
                per_step.append(got[0].step_s)
            stopped = any(o.interrupted for o in got)
            for o in got:
                outcomes[(o.problem, o.seed)] = o
            if on_batch:
                on_batch(got)
    ordered = [outcomes[(i, s)] for i in range(len(problems)) for s in seeds
               if (i, s) in outcomes]
    used = "+".join(sorted(set(chosen))) if strategy == "measure" else strategy
    report = BatchReport(used, groups, batches, len(devices) if "vmap" in chosen else 1,
                         compile_s, float(np.median(per_step)) if per_step else float("nan"),
                         notes)
    return ordered, report


def _batch_size(problem, preset, n_fits: int, max_batch: int, n_devices: int) -> int:
    size = max_batch or _fits_in_memory(problem, preset, n_devices)
    return max(1, min(size, n_fits))


def _measure(problems, preset, fits, max_batch, chunk, devices, cache, notes, say) -> str:
    """Time one chunk (after a warm-up chunk) of a single fit and of the group's first vmapped
    batch, on throwaway states; the compiled chunks stay in ``cache`` for the real run."""
    k = _batch_size(problems[fits[0][0]], preset, len(fits), max_batch, len(devices))
    n = max(1, min(chunk or default_chunk(), preset.iters))
    single = _stacked(problems, preset, fits[:1], [devices[0]], stack=False)
    many = _stacked(problems, preset, fits[:k], devices)

    def seconds(setup):
        state, batch, axes, mesh, step, _ = setup
        times = [sec for *_, sec in run_chunks(step, state, batch, [n, n], batch_axes=axes,
                                                compiled=cache, mesh=mesh)]
        return times[-1] / n

    t1, tk = seconds(single), seconds(many) / k
    how = "vmap" if tk < t1 else "sequential"
    notes.append(f"measured at {problems[fits[0][0]].out_hw[1]}x{problems[fits[0][0]].out_hw[0]}"
                 f": {k} vmapped fits {tk * 1e3:.1f} ms per fit-step, one fit "
                 f"{t1 * 1e3:.1f} ms; running {how}")
    if say:
        say(notes[-1])
    return how


def _stacked(problems, preset, todo, devices, stack: bool = True):
    """(state, batch, batch_axes, mesh, step, net) for the fits ``todo``: stacked on a leading fit
    axis padded to a multiple of the device count and sharded over them (``stack``), or the
    single fit ``todo[0]`` as ``api.fit`` runs it."""
    built = [api.build(problems[i], preset, s) for i, s in todo]
    net = built[0][0]
    tx = make_optimizer(preset.lr)
    window = api._es_window(preset)
    states = [init_state(net, tx, jax.random.key(s), b[1], window)
              for (_, s), b in zip(todo, built)]
    step = api.preset_step(net, tx, problems[todo[0][0]], preset)
    if not stack:
        return states[0], built[0][2], None, None, step, net
    tree_stack = lambda xs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *xs)
    state, batch = tree_stack(states), tree_stack([b[2] for b in built])
    total = -(-len(todo) // len(devices)) * len(devices)
    state, batch = _pad(state, total), _pad(batch, total)
    mesh = Mesh(np.array(devices), ("fits",)) if len(devices) > 1 else None
    if mesh is not None:
        state, batch = shard(state, mesh), shard(batch, mesh)
    return state, batch, {key: 0 for key in batch}, mesh, step, net


def _fits_in_memory(problem, preset, n_devices: int) -> int:
    """How many fits of ``problem`` the devices hold at once by ``memory.estimate_bytes``."""
    net, z, _ = api.build(problem, preset, 0)
    per_fit = memory.estimate_bytes(net, z.shape) + api.early_stop_bytes(problem, preset)
    per_device = max(1, memory.device_bytes() // max(per_fit, 1))
    return int(per_device * n_devices)


def _pad(tree, total: int):
    """Repeat the last entry of every leaf's leading axis up to ``total``."""
    def pad(x):
        extra = total - x.shape[0]
        return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, 0)])
    return jax.tree_util.tree_map(pad, tree)


def shard(tree, mesh):
    """Place ``tree`` (leaves with a leading fit axis divisible by the mesh's size) split along
    that axis over the mesh's devices."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("fits")))


def _fit_vmapped(problems, preset, todo, chunk, devices, on_chunk, cache):
    state, batch, axes, mesh, step, net = _stacked(problems, preset, todo, devices)
    k = len(todo)
    chunk = max(1, min(chunk or default_chunk(), preset.iters))
    per_step, history, timing, interrupted, halted = [], [], {}, False, False
    sizes = api._boundaries(preset.iters, chunk, ())
    for state, done, n, m, seconds in run_chunks(step, state, batch, sizes, batch_axes=axes,
                                                 timing=timing, compiled=cache, mesh=mesh):
        per_step.append(seconds / (n * k))
        for i in range(n):
            history.append({key: v[i][:k] for key, v in m.items()} | {"iter": done - n + i + 1})
        if on_chunk and on_chunk(done, preset.iters, _first(history[-1])):
            interrupted = done < preset.iters
            break
        if preset.early_stop == "halt" and bool(np.all(np.asarray(state.es["fired"])[:k])):
            halted = True
            break
    render = jax.vmap(lambda p, z: net.apply({"params": p}, z))
    if mesh is not None:
        # shard_map, not the SPMD partitioner: XLA 0.10.2 fails to partition a vmapped
        # (grouped) convolution whose group count is split over devices.
        fits = PartitionSpec("fits")
        render = jax.shard_map(render, mesh=mesh, in_specs=(fits, fits), out_specs=fits)
    outs = np.clip(np.asarray(jax.jit(render)(state.params, batch["z"]))[:k, 0], 0, 1)
    avgs = np.clip(np.asarray(state.out_avg)[:k, 0], 0, 1)
    es_all = jax.device_get(state.es)
    got = []
    for j, (i, s) in enumerate(todo):
        hist = [{key: (h[key] if key == "iter" else api._scalar(h[key][j])) for key in h}
                for h in history]
        es = api.early_stop_result(jax.tree_util.tree_map(lambda x: x[j], es_all))
        final = api.final_metrics(problems[i], outs[j], avgs[j], es)
        got.append(FitOutcome(i, s, outs[j], avgs[j], hist, final, es,
                              interrupted and not halted, timing["compile_s"],
                              float(np.median(per_step))))
    return got


def _first(metrics: dict) -> dict:
    """The first fit's scalars of a history row (for progress bars)."""
    return {k: (v if k == "iter" else api._scalar(v[0])) for k, v in metrics.items()}
