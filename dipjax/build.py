"""Building fits: the generator, its input z, the batch arrays, the optimizer, the step function
and the initial state, for one fit or for a stacked group of same-shaped fits.

``setup(problems, preset, fits)`` is the one place where this happens; the engine, the
experiments and the tests all start from the ``Setup`` it returns. Size and memory are checked
here, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dipjax import memory
from dipjax.inputs import make_input
from dipjax.io import InputError
from dipjax.ops import conv
from dipjax.presets import Preset, net_with_io
from dipjax.step import FitState, forward, init_state, make_optimizer, make_step


def problem_arrays(problem, preset: Preset, seed: int):
    """(net, z, batch) of one fit. z: (1, H, W, D) float32; batch: ``z``, ``target``
    (1, h, w, C) and, when the problem has them, ``mask`` and ``gt``. Raises InputError when the
    generator cannot produce the problem's output size or the fit would not fit the device."""
    build_net = lambda depth: net_with_io(
        preset.net, depth, problem.channels, preset.init_style
    ).build()
    if preset.input_kind == "image":
        if problem.net_image is None:
            raise InputError(f"preset {preset.name} feeds an image to the net; none was given")
        z = jnp.asarray(problem.net_image[None])
        net = build_net(z.shape[-1])
    else:
        net = build_net(preset.input_depth)
        hw = input_hw(net, problem.out_hw)
        make = _jitted_input(preset.input_kind, preset.input_depth, hw, preset.input_var)
        z = make(jax.random.key(seed))
    check_size(net, z.shape, problem, preset)
    memory.check_window(problem, preset)
    memory.check(
        net,
        z.shape,
        problem.out_hw,
        preset.name,
        extra_bytes=memory.output_buffer_bytes(problem, preset),
    )
    batch = {"z": z, "target": jnp.asarray(problem.target[None])}
    for name in ("mask", "gt"):
        if getattr(problem, name) is not None:
            batch[name] = jnp.asarray(getattr(problem, name)[None])
    return net, z, batch


def input_hw(net, out_hw) -> tuple:
    """The input's (height, width) for output size ``out_hw``: the same, or smaller by the
    net's ``input_scale`` (the Deep Decoder starts from a coarse grid)."""
    s = getattr(net, "input_scale", 1)
    return (max(1, out_hw[0] // s), max(1, out_hw[1] // s))


@functools.lru_cache(maxsize=64)
def output_shape(net, z_shape: tuple) -> Optional[tuple]:
    """The generator's output shape for input shape ``z_shape``, or None where it fails."""
    try:
        f = lambda x: net.init_with_output(jax.random.key(0), x)[0]
        return tuple(jax.eval_shape(f, jax.ShapeDtypeStruct(z_shape, jnp.float32)).shape)
    except (ValueError, TypeError, IndexError):
        return None


class SizeError(InputError):
    """The generator cannot produce the problem's output size; ``side``: the multiple (and
    smallest side) it needs."""

    def __init__(self, message: str, side: int):
        super().__init__(message)
        self.side = side


def check_size(net, z_shape, problem, preset: Preset) -> None:
    out = output_shape(net, tuple(z_shape)) if min(problem.out_hw) > 0 else None
    if out is not None and tuple(out[1:3]) == tuple(problem.out_hw):
        return
    h, w = problem.out_hw
    side = minimum_side(net, z_shape[-1])
    got = "fails" if out is None else f"gives {out[2]}x{out[1]}"
    raise SizeError(
        f"image size {w}x{h}: preset {preset.name}'s generator {got} at this size; "
        f"it needs sides that are multiples of {side} (at least that many pixels)",
        side,
    )


def minimum_side(net, depth: int) -> int:
    """The smallest power-of-two square side the net maps onto itself."""
    for side in (2**k for k in range(1, 12)):
        out = output_shape(net, (1, *input_hw(net, (side, side)), depth))
        if out is not None and tuple(out[1:3]) == (side, side):
            return side
    return 2048


def es_window(preset: Preset) -> int:
    """The early-stopping detector's window (0 when it is off)."""
    return preset.es_window if preset.early_stop != "off" else 0


def preset_step(net, tx, problem, preset: Preset):
    """The step function of ``problem`` with every setting taken from ``preset`` (its
    convolutions traced in ``preset.precision``)."""
    step = make_step(
        net,
        tx,
        problem.measure,
        loss=preset.loss,
        reg_noise_std=preset.reg_noise_std,
        exp_weight=preset.exp_weight,
        backtrack_every=preset.backtrack_every,
        backtrack_drop_db=preset.backtrack_drop_db,
        tv_weight=preset.tv_weight,
        es_patience=preset.es_patience,
        sgld=preset.sgld,
        sgld_burn_in=preset.burn_in,
    )
    return conv.traced_with(step, preset.precision)


# Compiler options for the render on a CPU (the final output and snapshots, run rarely): LLVM's
# optimiser off. Its compile takes a third of the time (superres-fast at 256x256: 3.1 -> 1.0 s);
# outputs move by float rounding (fused multiply-adds), at most 2e-6 there. Not used for the
# initialisation, whose weights would move by one ulp and every fit with them.
ONE_SHOT = {"xla_backend_optimization_level": 0}
# For the initialisation and the input (random draws: threefry's unrolled rounds are most of
# what LLVM optimises): its lighter level, which gives the default level's bits on the nets
# tested (tests/test_build.py) and compiles in half the time or less (the tiny test net's
# initialisation 16.1 -> 7.7 s, superres-fast's 13.3 -> 8.8 s, a uniform draw 3.1 -> 0.3 s).
LIGHT = {"xla_backend_optimization_level": 1}


def _one_shot_options(options=ONE_SHOT):
    return options if jax.default_backend() == "cpu" else None  # measured on the CPU only


@functools.lru_cache(maxsize=16)
def _jitted_init(net, tx, window: int, posterior: bool):
    # One compiled initialisation instead of hundreds of small eager ones (a 2-core CPU spent
    # 37 s initialising the denoising net op by op).
    init = lambda key, z: init_state(net, tx, key, z, window, posterior)
    return jax.jit(init, compiler_options=_one_shot_options(LIGHT))


@functools.lru_cache(maxsize=16)
def _jitted_input(kind: str, depth: int, hw: tuple, var: float):
    """The fit's input z from the fit's seed key (``make_input`` with the key folded with 1)."""
    make = lambda key: make_input(jax.random.fold_in(key, 1), kind, depth, hw, var=var)
    return jax.jit(make, compiler_options=_one_shot_options(LIGHT))


@dataclasses.dataclass
class Setup:
    """Everything the engine runs for a group of fits.

    fits: the real fits, (problem index, seed) pairs. state/batch: one fit's as ``make_step``
    takes them, or, with ``axes`` (a dict like ``batch``, 0 = stacked), every leaf with a leading
    fit axis padded to a multiple of the mesh's devices. mesh: a 1-D ``Mesh`` ('fits') or None.
    z: the unperturbed input, shaped like ``batch['z']``.
    """

    fits: list
    net: object
    tx: object
    step: object
    state: FitState
    batch: dict
    axes: Optional[dict] = None
    mesh: Optional[Mesh] = None
    precision: str = "f32"

    @property
    def stacked(self) -> bool:
        return self.axes is not None

    def render(self, params) -> jax.Array:
        """The net's outputs for the unperturbed inputs, (K_padded | 1, 1, H, W, C) on device."""
        render = _renderer(self.net, self.stacked, self.mesh, self.precision)
        return render(params, self.batch["z"])

    def per_fit(self, x) -> np.ndarray:
        """A state or render leaf on the host with one entry per real fit: (K, ...)."""
        x = np.asarray(x)
        return x[: len(self.fits)] if self.stacked else x[None]


@functools.lru_cache(maxsize=16)
def _renderer(net, stacked: bool, mesh, precision: str = "f32"):
    render = conv.traced_with(functools.partial(forward, net), precision)
    if not stacked:
        return jax.jit(render, compiler_options=_one_shot_options())
    render = jax.vmap(render)
    if mesh is not None:
        # shard_map, not the SPMD partitioner: XLA 0.10.2 fails to partition a vmapped
        # (grouped) convolution whose group count is split over devices.
        fits = PartitionSpec("fits")
        render = jax.shard_map(render, mesh=mesh, in_specs=(fits, fits), out_specs=fits)
    return jax.jit(render, compiler_options=_one_shot_options())


def setup(
    problems: Sequence, preset: Preset, fits: Sequence[tuple], *, stack: bool = False, devices=None
) -> Setup:
    """The Setup of ``fits`` ((index into ``problems``, seed) pairs, all of one shape group).
    Without ``stack`` it is the single fit ``fits[0]``; with it the fits are stacked for a
    vmapped step and sharded over ``devices`` (default: all local devices)."""
    fits = [tuple(f) for f in fits]
    built = [problem_arrays(problems[i], preset, s) for i, s in fits]
    net = built[0][0]
    tx = make_optimizer(preset.lr, preset.weight_decay)
    init = _jitted_init(net, tx, es_window(preset), preset.sgld > 0)
    states = [init(jax.random.key(s), b[1]) for (_, s), b in zip(fits, built)]
    step = preset_step(net, tx, problems[fits[0][0]], preset)
    if not stack:
        return Setup(fits[:1], net, tx, step, states[0], built[0][2], precision=preset.precision)
    devices = list(devices if devices is not None else jax.local_devices())
    tree_stack = lambda xs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *xs)
    state, batch = tree_stack(states), tree_stack([b[2] for b in built])
    total = -(-len(fits) // len(devices)) * len(devices)
    state, batch = _pad(state, total), _pad(batch, total)
    mesh = Mesh(np.array(devices), ("fits",)) if len(devices) > 1 else None
    if mesh is not None:
        state, batch = shard(state, mesh), shard(batch, mesh)
    axes = {key: 0 for key in batch}
    return Setup(fits, net, tx, step, state, batch, axes, mesh, preset.precision)


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
