"""The fit state, the one step function, and the jitted chunk of steps run by ``lax.scan``.

``make_step`` returns ``step(state, batch) -> (state, metrics)`` for ONE fit; everything hashable
(net, measure, loss, optimizer, preset numbers) sits in its closure, every array is an argument.
``batch`` holds ``z`` (1, H, W, D), ``target`` (1, h, w, C), ``mask`` (1, H, W, 1|C) and,
when known, ``gt`` (1, H, W, C); all float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dipjax import early_stop, threefry
from dipjax.inputs import perturb
from dipjax.metrics import psnr
from dipjax.ops import conv, conv_choice
from dipjax.problem import Measure, loss_fn, total_variation


@flax.struct.dataclass
class FitState:
    """params/opt_state: the generator's weights as one float32 vector (``flatten_params``) and
    Adam's state over it (learning rate inside);
    step: iterations done; key: the fit's root key (step keys are ``fold_in(key, step)``);
    out_avg: moving average of the outputs (1, H, W, C); saved_*: the last good parameters, for
    backtracking and divergence; last_psnr: the fit PSNR at the last check; es: the early-stopping
    detector's state (``dipjax.early_stop``), empty when it is off. post: the running moments
    of the SGLD posterior samples (``posterior_init``), empty when SGLD is off."""

    params: jax.Array
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    out_avg: jax.Array
    saved_params: jax.Array
    saved_opt_state: optax.OptState
    last_psnr: jax.Array
    es: dict = dataclasses.field(default_factory=dict)
    post: dict = dataclasses.field(default_factory=dict)


def flatten_params(tree) -> jax.Array:
    """A parameter tree as one float32 vector (N,), its leaves in ``tree_leaves`` order.

    The fit state keeps the weights so: Adam's update, the rollback and the saved copy are then a
    few operations on one array instead of a few per leaf (the denoising net's step compiles
    half the kernels, ``experiments/step_compile.py``). All of a net's weights are float32."""
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@functools.lru_cache(maxsize=32)
def _param_shapes(net, z_shape: tuple, z_dtype):
    spec = jax.ShapeDtypeStruct(z_shape, z_dtype)
    return jax.eval_shape(lambda z: net.init(jax.random.key(0), z), spec)["params"]


def unflatten_params(net, z: jax.Array, flat: jax.Array):
    """``net``'s parameter tree from ``flatten_params``' vector; ``z``: an input of the net."""
    leaves, treedef = jax.tree_util.tree_flatten(_param_shapes(net, z.shape, z.dtype))
    ends = [0]
    for leaf in leaves:
        ends.append(ends[-1] + math.prod(leaf.shape))
    if flat.shape != (ends[-1],):
        raise ValueError(f"{flat.shape} parameters for a net of {ends[-1]}")
    # one split, whose gradient is one concatenation (slices' would be a padded sum per leaf)
    parts = jnp.split(flat, ends[1:-1])
    return treedef.unflatten([p.reshape(x.shape).astype(x.dtype) for p, x in zip(parts, leaves)])


def forward(net, params: jax.Array, z: jax.Array) -> jax.Array:
    """``net``'s output for input ``z`` with the flat parameters ``params``."""
    return net.apply({"params": unflatten_params(net, z, params)}, z)


def make_optimizer(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam with torch's defaults (betas 0.9/0.999, eps 1e-8); the rate can be lowered on device.
    ``weight_decay`` > 0 adds ``weight_decay * params`` to the gradient (torch's coupled L2
    decay: a Gaussian prior on the weights). The same object for the same arguments, so that
    the functions jitted per optimizer (``build``'s initialisation) are traced once per run, not
    once per fit."""
    return _optimizer(float(lr), float(weight_decay))


@functools.lru_cache(maxsize=64)
def _optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
    def adam(learning_rate):
        tx = optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
        return optax.chain(optax.add_decayed_weights(weight_decay), tx) if weight_decay else tx

    return optax.inject_hyperparams(adam)(learning_rate=lr)


def posterior_init(shape: tuple) -> dict:
    """Running moments of the posterior samples (Welford): count ``n``, ``mean`` and ``m2`` (the
    sum of squared deviations), both of the output's ``shape``."""
    zeros = jnp.zeros(shape, jnp.float32)
    return {"n": jnp.zeros((), jnp.int32), "mean": zeros, "m2": zeros}


def posterior_update(post: dict, sample: jax.Array, take: jax.Array) -> dict:
    """``post`` with ``sample`` added where ``take`` (a boolean scalar), unchanged elsewhere."""
    n = post["n"] + 1
    delta = sample - post["mean"]
    mean = post["mean"] + delta / n
    new = {"n": n, "mean": mean, "m2": post["m2"] + delta * (sample - mean)}
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, post)


def init_state(
    net, tx, key: jax.Array, z: jax.Array, es_window: int = 0, posterior: bool = False
) -> FitState:
    """Initialise weights (PyTorch's default distributions) from the first half of
    ``split(key)``; the second half drives the per-step input perturbation (and SGLD's noise).
    ``es_window`` > 0 adds the early-stopping detector's state, ``posterior`` the SGLD moments."""
    init_key, key = jax.random.split(key)
    params = flatten_params(net.init(init_key, z)["params"])
    opt_state = tx.init(params)
    out = jax.eval_shape(lambda p: forward(net, p, z), params)
    copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # distinct buffers: state may be donated
    return FitState(
        params,
        opt_state,
        jnp.zeros((), jnp.int32),
        key,
        jnp.zeros(out.shape, out.dtype),
        copy(params),
        copy(opt_state),
        jnp.zeros((), jnp.float32),
        early_stop.init(es_window, out.shape) if es_window else {},
        posterior_init(out.shape) if posterior else {},
    )


def _scale_lr(opt_state, factor):
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = hp["learning_rate"] * factor
    return opt_state._replace(hyperparams=hp)


def _langevin(params, std, state: FitState):
    """``params`` (flat) + N(0, std**2) noise drawn from the step's own key."""
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 1)
    return params + std * threefry.normal(key, params.shape, params.dtype)


def make_step(
    net,
    tx,
    measure: Measure,
    *,
    loss: str = "mse",
    reg_noise_std: float = 0.0,
    exp_weight: float = 0.99,
    backtrack_every: int = 0,
    backtrack_drop_db: float = 5.0,
    divergence_lr_factor: float = 0.5,
    tv_weight: float = 0.0,
    es_patience: int = 0,
    sgld: float = 0.0,
    sgld_burn_in: int = 0,
) -> Callable:
    """One iteration: perturb z, forward, loss (plus ``tv_weight`` x total variation of the
    output), gradient, Adam update, output average, PSNRs, backtracking, NaN/Inf rollback and,
    when the state carries one, the early-stopping detector (firing after ``es_patience`` steps
    without a new variance minimum); all on the device.

    SGLD (Cheng et al., CVPR 2019), when ``sgld`` > 0: after the update every parameter gets
    Gaussian noise of standard deviation ``sgld`` x the learning rate, drawn from the step's key.
    When the state carries ``post``, each iteration after ``sgld_burn_in`` adds its output (the
    forward pass of the step) to the running posterior moments."""
    loss_of = loss_fn(loss)
    where = lambda c, a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(c, x, y), a, b)

    def step(state: FitState, batch: dict):
        z = batch["z"]
        if reg_noise_std > 0:
            z = perturb(jax.random.fold_in(state.key, state.step), z, reg_noise_std)

        def objective(params):
            out = forward(net, params, z)
            pred = measure(out, batch.get("mask"))
            value = loss_of(pred, batch["target"])
            if tv_weight:
                value = value + tv_weight * total_variation(out)
            return value, (out, pred)

        (value, (out, pred)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if sgld:
            params = _langevin(params, sgld * opt_state.hyperparams["learning_rate"], state)
        psnr_fit = psnr(pred, batch["target"])
        finite = jnp.isfinite(value)
        check = (backtrack_every > 0) & (state.step % max(backtrack_every, 1) == 0)
        drop = check & finite & (psnr_fit - state.last_psnr < -backtrack_drop_db)
        rollback = drop | ~finite
        save = finite & ~drop & (check | (backtrack_every == 0))
        restored_opt = jax.lax.cond(
            finite, lambda o: o, lambda o: _scale_lr(o, divergence_lr_factor), state.saved_opt_state
        )
        first = state.step == 0
        avg = jnp.where(first, out, exp_weight * state.out_avg + (1 - exp_weight) * out)
        new = FitState(
            params=where(rollback, state.saved_params, params),
            opt_state=where(rollback, restored_opt, opt_state),
            step=state.step + 1,
            key=state.key,
            out_avg=jnp.where(rollback, state.out_avg, avg),
            saved_params=where(save, state.params, state.saved_params),
            saved_opt_state=where(save, state.opt_state, state.saved_opt_state),
            last_psnr=jnp.where(save & check, psnr_fit, state.last_psnr),
            es=state.es,
        )
        metrics = {
            "loss": value,
            "psnr_fit": psnr_fit,
            "rolled_back": rollback,
            "diverged": ~finite,
            "lr": state.opt_state.hyperparams["learning_rate"],
        }
        if state.es:
            es, metrics["wmv"] = early_stop.update(
                state.es, out, state.step + 1, es_patience, take=finite
            )
            new = new.replace(es=es)
            metrics["es_fired"] = es["fired"]
        if state.post:
            take = finite & ~rollback & (state.step >= sgld_burn_in)
            new = new.replace(post=posterior_update(state.post, out, take))
        if "gt" in batch:
            metrics["psnr_gt"] = psnr(out, batch["gt"])
            metrics["psnr_gt_avg"] = psnr(avg, batch["gt"])
        return new, metrics

    return step


def make_runner(
    step: Callable, n: int, batch_axes=None, unroll: Optional[bool] = None, mesh=None
) -> Callable:
    """jit(run(state, batch) -> (state, metrics[n])): ``n`` steps by ``lax.scan``, the state
    donated on accelerators. With ``batch_axes`` (a dict like the batch: 0 for a leaf stacked
    per fit, None for one shared by all fits) the state carries a leading fit axis and the step
    is vmapped, so each fit keeps its own BatchNorm statistics.

    ``unroll`` (default: on the CPU only) unrolls the scan: XLA's CPU convolutions run several
    times slower inside a loop body than unrolled (experiments/cpu_scan_unroll.py), while
    accelerators prefer the rolled loop (short compile, one launch per chunk).

    ``mesh``: a 1-D ``jax.sharding.Mesh`` with axis 'fits'; every leaf of state and batch then
    has a leading fit axis split over its devices, and each device runs the vmapped step on its
    own fits (``jax.shard_map``: fits never talk to each other, so nothing is communicated).

    A vmapped step on the CPU traces its convolutions as matrix products (``conv_impl('batched')``:
    Winograd's where the rules pick it, else patches x kernel) unless an implementation was
    chosen: with per-fit weights XLA's CPU convolutions become grouped convolutions, slower than
    batched products (``experiments/bench_batching.py``).
    """
    one = step if batch_axes is None else jax.vmap(step, in_axes=(0, batch_axes))
    if batch_axes is not None and jax.default_backend() == "cpu":
        vmapped = one

        def one(state, batch):
            chosen = conv.chosen_impl()
            with conv.conv_impl("batched" if chosen == "auto" else chosen):
                return vmapped(state, batch)

    if unroll is None:
        unroll = jax.default_backend() == "cpu"

    # Traced once and called n times: tracing the generator n times took 4.6 s of the 5-step
    # chunk's lowering on a CPU, 1.3 s this way (same compiled code, same step time).
    # A fresh function: jit's trace cache keys on the function, not on the convolution settings
    # (``conv.conv_choices``) that a later lowering of the same step may trace it with.
    def step_once(state, batch):
        return one(state, batch)

    one_jit = jax.jit(step_once) if unroll and n > 1 else one

    def run(state, batch):
        if unroll or n == 1:
            # Straight-line code: even a one-step scan stays a loop, and slow, on the CPU.
            metrics = []
            for _ in range(n):
                state, m = one_jit(state, batch)
                if n > 1:
                    # Each step compiled as when alone: fused with its neighbours, the steps of a
                    # 5-step chunk were rounded differently (XLA's CPU loop emitter) when the
                    # early-stopping detector read their outputs, so turning it on moved the fit.
                    state, m = jax.lax.optimization_barrier((state, m))
                metrics.append(m)
            return state, jax.tree_util.tree_map(lambda *x: jnp.stack(x), *metrics)
        return jax.lax.scan(lambda s, _: one(s, batch), state, None, length=n)

    if mesh is not None:
        fits = jax.sharding.PartitionSpec("fits")
        per_step = jax.sharding.PartitionSpec(None, "fits")  # metrics: (n, fits)
        run = jax.shard_map(run, mesh=mesh, in_specs=(fits, fits), out_specs=(fits, per_step))
    # Not donated on the CPU: updating a donated state in place made XLA copy each leaf that the
    # step both reads and rewrites (the rollback's selects): 680 copies, ~10 % of a 64 px step
    # with the weights as a tree; 14 with them as one vector, and no faster than not donating
    # (experiments/step_variants.py --donate). On accelerators donation halves the state's memory.
    donate = () if jax.default_backend() == "cpu" else 0
    return jax.jit(run, donate_argnums=donate)


def compiled_chunk(
    step: Callable,
    n: int,
    state,
    batch: dict,
    *,
    batch_axes=None,
    mesh=None,
    cache: Optional[dict] = None,
    report: Optional[Callable] = None,
    stop: Optional[Callable] = None,
):
    """(the compiled chunk of ``n`` steps for these arguments, seconds spent compiling it,
    measuring convolution layers and their library included: ``dipjax.ops.conv_choice``, which
    tells ``report``). The chunk is None when ``stop()`` turned true before the compile (while
    layers were measured or the step traced): nothing is compiled then.
    ``cache``: shared by calls whose steps are the same function of their arguments (the fits
    of one shape group), keyed by chunk size, shapes and placement. ``mesh``: see
    ``make_runner``."""
    cache = {} if cache is None else cache
    key = (n, _signature((state, batch)))
    if key in cache:
        return cache[key], 0.0
    t = time.perf_counter()
    lower = lambda: make_runner(step, n, batch_axes, mesh=mesh).lower(state, batch)
    # A single fit's layers run as measured fastest here, by the library measured fastest
    # (vmapped fits: batched products).
    if batch_axes is not None:
        lowered, options = lower(), conv.codegen_options()
    else:
        try:
            lowered, options = conv_choice.traced(lower, report, stop)
        except conv_choice.Stopped:
            return None, time.perf_counter() - t
    if stop is not None and stop():
        return None, time.perf_counter() - t
    cache[key] = lowered.compile(options)
    return cache[key], time.perf_counter() - t


def chunk_sizes(iters: int, chunk: int, every=()) -> list:
    """Sizes of the successive chunks of at most ``chunk`` steps so that every multiple of each
    ``every`` (snapshots, checkpoints) ends a chunk."""
    marks = {iters}
    for e in every:
        if e:
            marks.update(range(e, iters, e))
    sizes, done = [], 0
    for m in sorted(marks):
        while done < m:
            n = min(chunk, m - done)
            sizes.append(n)
            done += n
    return sizes


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (
        treedef,
        tuple((x.shape, str(x.dtype), str(getattr(x, "sharding", None))) for x in leaves),
    )


def default_chunk() -> int:
    """Steps per host call: one on the CPU, where a chunk is written out step by step and its
    compile time (and the time to load it from the compile cache) grows with its length, while
    the host loop keeps the next step in flight; 50 (a rolled scan) on accelerators."""
    return 1 if jax.default_backend() == "cpu" else 50
