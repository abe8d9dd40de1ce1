"""Seed ensembles: K independent fits of one problem, their mean and a per-pixel uncertainty.

Two strategies behind one function. ``vmap`` stacks parameters, optimizer state and inputs on a
leading axis and runs one vmapped step (each fit keeps its own BatchNorm statistics); per-fit
weights make every convolution a grouped one, which XLA runs well on GPUs at small sizes and
slowly on CPUs. ``sequential`` runs the K fits one after another with one compiled step, so K
seeds cost K single fits. ``auto`` picks ``sequential`` on a CPU, ``vmap`` elsewhere.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dipjax import api
from dipjax.metrics import psnr_np
from dipjax.presets import Preset
from dipjax.step import default_chunk, init_state, make_optimizer, make_step, run_chunks

STRATEGIES = ("auto", "vmap", "sequential")


@dataclasses.dataclass
class EnsembleResult:
    """outputs / outputs_avg: (K, H, W, C) per seed (last output, moving average); mean, std:
    (H, W, C) over seeds of ``outputs``; final: per-seed and ensemble metrics; history: per
    iteration, each metric a list over seeds."""

    seeds: list
    outputs: np.ndarray
    outputs_avg: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    final: dict
    history: list
    strategy: str
    compile_s: float
    step_s: float


def fit_ensemble(problem, preset: Preset, seeds: Sequence[int], *, strategy: str = "auto",
                 chunk: int = 0, on_chunk=None) -> EnsembleResult:
    """Fit ``problem`` once per seed; seed s gives the same fit as ``api.fit(..., seed=s)``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        strategy = "sequential" if jax.default_backend() == "cpu" else "vmap"
    seeds = list(seeds)
    if strategy == "sequential":
        runs = [api.fit(problem, preset, seed=s, chunk=chunk, on_chunk=on_chunk) for s in seeds]
        outputs = np.stack([r.output for r in runs])
        outputs_avg = np.stack([r.output_avg for r in runs])
        history = [{k: ([h[k] for h in hs] if k != "iter" else hs[0][k]) for k in hs[0]}
                   for hs in zip(*[r.history for r in runs])]
        compile_s = runs[0].compile_s
        step_s = float(np.mean([r.step_s for r in runs]))
    else:
        outputs, outputs_avg, history, compile_s, step_s = _fit_vmapped(problem, preset, seeds,
                                                                         chunk, on_chunk)
    mean, std = outputs.mean(0), outputs.std(0)
    final = {"per_seed": [api.final_metrics(problem, o, a) for o, a in zip(outputs, outputs_avg)]}
    if problem.gt is not None:
        final["psnr_mean"] = psnr_np(mean, problem.gt)
        final["psnr_mean_avg"] = psnr_np(outputs_avg.mean(0), problem.gt)
        final["psnr_single_mean"] = float(np.mean([f["psnr_gt"] for f in final["per_seed"]]))
    return EnsembleResult(seeds, outputs, outputs_avg, mean, std, final, history, strategy,
                          compile_s, step_s)


def _fit_vmapped(problem, preset, seeds, chunk, on_chunk):
    built = [api.build(problem, preset, s) for s in seeds]
    net, batch = built[0][0], dict(built[0][2])
    batch["z"] = jnp.stack([b[1] for b in built])
    tx = make_optimizer(preset.lr)
    states = [init_state(net, tx, jax.random.key(s), b[1]) for s, b in zip(seeds, built)]
    state = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
    axes = {k: (0 if k == "z" else None) for k in batch}
    step = make_step(net, tx, problem.measure, loss=preset.loss,
                     reg_noise_std=preset.reg_noise_std, exp_weight=preset.exp_weight,
                     backtrack_every=preset.backtrack_every,
                     backtrack_drop_db=preset.backtrack_drop_db)
    chunk = max(1, min(chunk or default_chunk(), preset.iters))
    per_step, history, timing = [], [], {}
    sizes = api._boundaries(preset.iters, chunk, ())
    for state, done, n, m, seconds in run_chunks(step, state, batch, sizes, batch_axes=axes,
                                                 timing=timing):
        per_step.append(seconds / (n * len(seeds)))
        for i in range(n):
            history.append({"iter": done - n + i + 1,
                            **{k: [api._scalar(x) for x in v[i]] for k, v in m.items()}})
        if on_chunk and on_chunk(done, preset.iters, history[-1]):
            break
    render = jax.jit(jax.vmap(lambda p, z: net.apply({"params": p}, z)))
    outputs = np.clip(np.asarray(render(state.params, batch["z"]))[:, 0], 0, 1)
    outputs_avg = np.clip(np.asarray(state.out_avg)[:, 0], 0, 1)
    return outputs, outputs_avg, history, timing["compile_s"], float(np.median(per_step))


def uncertainty_png(std: np.ndarray) -> np.ndarray:
    """A (H, W, 1) picture of the per-pixel std (mean over channels), scaled to its maximum."""
    s = std.mean(-1, keepdims=True)
    return s / max(float(s.max()), 1e-12)


__all__ = ["EnsembleResult", "STRATEGIES", "fit_ensemble", "uncertainty_png"]
