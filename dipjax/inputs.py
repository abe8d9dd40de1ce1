"""Network inputs z of the reference (``get_noise``) and their per-iteration perturbation.

All inputs are NHWC float32 arrays of shape (1, H, W, depth), driven by explicit PRNG keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dipjax import threefry

INPUT_KINDS = ("noise", "meshgrid")


def noise_input(
    key: jax.Array, depth: int, size: tuple[int, int], noise_type: str = "u", var: float = 0.1
) -> jax.Array:
    """``get_noise(depth, 'noise', size, noise_type, var)``: U[0, 1) * var ('u', mean var/2, not
    centred) or N(0, 1) * var ('n'). Shape (1, H, W, depth)."""
    shape = (1, size[0], size[1], depth)
    if noise_type == "u":
        return jax.random.uniform(key, shape, jnp.float32) * var
    if noise_type == "n":
        return jax.random.normal(key, shape, jnp.float32) * var
    raise ValueError(f"noise_type must be 'u' or 'n', got {noise_type!r}")


def meshgrid_input(size: tuple[int, int]) -> jax.Array:
    """``get_noise(2, 'meshgrid', size)``: channel 0 = x in [0, 1] along width, channel 1 = y in
    [0, 1] along height. Shape (1, H, W, 2)."""
    h, w = size
    x, y = np.meshgrid(np.arange(w) / float(w - 1), np.arange(h) / float(h - 1))
    return jnp.asarray(np.stack([x, y], axis=-1)[None], jnp.float32)


def make_input(
    key: jax.Array,
    kind: str,
    depth: int,
    size: tuple[int, int],
    noise_type: str = "u",
    var: float = 0.1,
) -> jax.Array:
    """Dispatch on ``kind`` in ``INPUT_KINDS`` (meshgrid requires depth 2)."""
    if kind == "noise":
        return noise_input(key, depth, size, noise_type, var)
    if kind == "meshgrid":
        if depth != 2:
            raise ValueError(f"a meshgrid input has depth 2, got input_depth={depth}")
        return meshgrid_input(size)
    raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {kind!r}")


def perturb(key: jax.Array, z: jax.Array, reg_noise_std: float) -> jax.Array:
    """``z + N(0, 1) * reg_noise_std``, a fresh draw for every key; z itself is never updated."""
    return z + reg_noise_std * threefry.normal(key, z.shape, z.dtype)
