"""Deterministic synthetic weights and inputs shared by the parity fixtures and their tests.

The fixtures script fills a reference PyTorch net with these values and records its output; the
tests rebuild the same values from the recorded keys and shapes, so no weights are committed.
"""

from __future__ import annotations

import numpy as np


def synthetic_state_dict(keys_and_shapes, seed: int) -> dict[str, np.ndarray]:
    """Values for every (key, shape), in order, from one numpy generator, float32.

    4-D conv weights: U(+-1/sqrt(shape[1]*kh*kw)); 1-D ``weight`` (norm scale): U(0.5, 1.5);
    biases: U(-0.1, 0.1).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in keys_and_shapes:
        shape = tuple(shape)
        if len(shape) == 4:
            bound = 1.0 / np.sqrt(shape[1] * shape[2] * shape[3])
            value = rng.uniform(-bound, bound, shape)
        elif key.endswith("weight"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        out[key] = value.astype(np.float32)
    return out


def synthetic_input(shape_nchw, seed: int) -> np.ndarray:
    """U[0, 1) float32 of the given NCHW shape."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, tuple(shape_nchw)).astype(np.float32)
