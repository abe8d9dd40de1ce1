"""A quick estimate of a fit's memory, to refuse images that cannot fit before compiling.

The estimate counts every module output of one forward pass (traced with ``eval_shape``, no
compute) times ``ACTIVATION_FACTOR`` (kept for the backward pass, their gradients, temporaries),
plus the parameters times ``PARAM_COPIES`` (weights, gradients, two Adam moments, the saved copy
for backtracking and its moments).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATION_FACTOR = 4
PARAM_COPIES = 7
BYTES = 4  # float32


def estimate_bytes(net, z_shape) -> int:
    """Estimated bytes one fit step needs for input shape (1, H, W, D)."""
    z = jax.ShapeDtypeStruct(tuple(z_shape), jnp.float32)

    def forward(x):
        variables = net.init(jax.random.key(0), x)
        _, inter = net.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
        return variables, inter

    variables, inter = jax.eval_shape(forward, z)
    size = lambda tree: sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(tree))
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
