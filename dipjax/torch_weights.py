"""Bring a reference PyTorch model's weights into the Flax variables of the same architecture.

``state_dict`` is a mapping from the reference's keys (e.g. ``'1.1.1.1.weight'``) to numpy
arrays; torch itself is not needed. Keys that hold no trainable value here are skipped: BatchNorm
running statistics (the reference never reads them) and the fixed Lanczos downsampler inside a
``downsample_mode='lanczos*'`` conv.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np
from flax.core import unfreeze

SKIPPED_LEAVES = ("running_mean", "running_var", "num_batches_tracked")


class WeightMismatch(ValueError):
    """A state_dict key or shape that does not fit the Flax variables."""


def _convert(module: dict, leaf: str, value: np.ndarray, key: str) -> tuple[str, np.ndarray]:
    if leaf == "weight" and value.ndim == 4:
        if "kernel" in module:  # Conv2d (out, in, kh, kw) -> (kh, kw, in, out)
            return "kernel", value.transpose(2, 3, 1, 0)
        if "transposed_kernel" in module:  # ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out)
            return "transposed_kernel", value.transpose(2, 3, 0, 1)
        raise WeightMismatch(f"{key}: a 4-D weight, but the Flax module has no conv kernel")
    if leaf == "weight" and value.ndim == 1:
        return "scale", value
    if leaf == "bias":
        return "bias", value
    raise WeightMismatch(f"{key}: unexpected parameter {leaf!r} with shape {value.shape}")


def load(state_dict: Mapping[str, np.ndarray], variables) -> dict:
    """Return a copy of ``variables`` with every parameter taken from ``state_dict``.

    ``variables`` may hold arrays or shape/dtype structs (from ``jax.eval_shape(net.init, ...)``).

    Raises ``WeightMismatch`` naming the first key with no counterpart, the first shape that
    differs, or the first Flax parameter that no key filled.
    """
    template = unfreeze(variables)["params"]
    params = {m: dict(leaves) for m, leaves in template.items()}
    filled = set()
    for key, value in state_dict.items():
        value = np.asarray(value)
        prefix, _, leaf = key.rpartition(".")
        if leaf in SKIPPED_LEAVES or ".downsampler_." in key + ".":
            continue
        if prefix not in params:
            raise WeightMismatch(f"{key}: no Flax module named {prefix!r}")
        name, converted = _convert(params[prefix], leaf, value, key)
        if name not in params[prefix]:
            raise WeightMismatch(f"{key}: the Flax module {prefix!r} has no {name!r}")
        expected = params[prefix][name].shape
        if converted.shape != expected:
            raise WeightMismatch(
                f"{key}: shape {value.shape} converts to {converted.shape}, expected {expected}"
            )
        params[prefix][name] = converted.astype(template[prefix][name].dtype)
        filled.add((prefix, name))
    missing = [f"{m}/{n}" for m, leaves in params.items() for n in leaves if (m, n) not in filled]
    if missing:
        raise WeightMismatch(
            f"no state_dict key for Flax parameter {missing[0]} ({len(missing)} missing)"
        )
    out = dict(unfreeze(variables))
    out["params"] = {
        m: {n: jax.numpy.asarray(v) for n, v in leaves.items()} for m, leaves in params.items()
    }
    return out
