"""A quick estimate of a fit's memory, to refuse images that cannot fit before compiling.

The estimate counts every module output of one forward pass (traced with ``eval_shape``, no
compute) times ``ACTIVATION_FACTOR`` (kept for the backward pass, their gradients, temporaries),
plus the parameters times ``PARAM_COPIES`` (weights, gradients, two Adam moments, the saved copy
for backtracking and its moments).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from dipjax.io import InputError

ACTIVATION_FACTOR = 4
PARAM_COPIES = 7
BYTES = 4  # float32


def estimate_bytes(net, z_shape) -> int:
    """Estimated bytes one fit step needs for input shape (1, H, W, D)."""
    return _estimate(net, tuple(z_shape))


@functools.lru_cache(maxsize=64)
def _estimate(net, z_shape: tuple) -> int:
    z = jax.ShapeDtypeStruct(tuple(z_shape), jnp.float32)

    def forward(x):
        variables = net.init(jax.random.key(0), x)
        _, inter = net.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
        return variables, inter

    variables, inter = jax.eval_shape(forward, z)
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
    return BYTES * (ACTIVATION_FACTOR * size(inter) + PARAM_COPIES * size(variables))


def device_bytes() -> int:
    """Memory of this process's first device: the accelerator's limit, or 80 % of the host's
    RAM."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def largest_side(need: int, have: int, hw) -> tuple[int, int]:
    """Scale (H, W) so that the need (roughly linear in pixels) fits ``have``."""
    f = (have / need) ** 0.5
    return int(hw[0] * f), int(hw[1] * f)


def output_buffer_bytes(problem, preset) -> int:
    """Device memory of per-fit output buffers outside the net: the early-stopping detector's
    window of outputs (``WINDOW_COPIES`` times) and its best one, and the SGLD posterior's mean
    and squared deviations."""
    return window_bytes(problem, preset) + (2 if preset.sgld else 0) * _output_bytes(problem)


# A step that is not donated its state (the CPU's) reads the window and writes a new one, and
# the variance's temporaries and a checkpoint's host copy hold it again: a 0.98 GB window (20000
# outputs of 64x64x3) took 3.8 GB more peak memory than a window of 100.
WINDOW_COPIES = 4


def window_bytes(problem, preset) -> int:
    """Memory of the early-stopping detector's window and its best output."""
    if preset.early_stop == "off":
        return 0
    return (WINDOW_COPIES * preset.es_window + 1) * _output_bytes(problem)


def _output_bytes(problem) -> int:
    return BYTES * int(np.prod(problem.out_hw)) * problem.channels


def check_window(problem, preset) -> None:
    """Refuse an early-stopping window that alone cannot fit the device (``ParameterError``
    naming ``es_window``)."""
    from dipjax.presets import ParameterError

    need, have = window_bytes(problem, preset), device_bytes()
    if need > have:
        h, w = problem.out_hw
        raise ParameterError(
            "es_window",
            preset.es_window,
            f"the window of {preset.es_window} outputs of {w}x{h} {budget(need, have)}; "
            f"take a smaller window",
        )


class TooBig(InputError):
    """A fit that cannot fit the device: ``need`` and ``have`` bytes, and ``fits`` (H, W), about
    the largest output that would, for a caller to restate in terms of the user's input."""

    def __init__(self, message: str, need: int, have: int, fits: tuple):
        super().__init__(message)
        self.need, self.have, self.fits = need, have, fits


def budget(need: int, have: int) -> str:
    return f"needs about {need / 2**30:.1f} GiB, the device has {have / 2**30:.1f} GiB"


def check(net, z_shape, hw, preset_name: str, n_fits: int = 1, extra_bytes: int = 0) -> None:
    """Refuse (``TooBig``), with the largest size that would fit, a fit that cannot fit the
    device."""
    need = n_fits * (estimate_bytes(net, z_shape) + extra_bytes)
    have = device_bytes()
    if need > have:
        h, w = largest_side(need, have, hw)
        raise TooBig(
            f"image size {hw[1]}x{hw[0]}: preset {preset_name} {budget(need, have)}; "
            f"downscale or crop to about {w}x{h} or smaller",
            need,
            have,
            (h, w),
        )


def fits_at_once(net, z_shape, problem, preset, n_devices: int) -> int:
    """How many fits of ``problem`` the devices hold at once by ``estimate_bytes``."""
    per_fit = estimate_bytes(net, z_shape) + output_buffer_bytes(problem, preset)
    per_device = max(1, device_bytes() // max(per_fit, 1))
    return int(per_device * n_devices)
