"""Checkpoints of a fit with orbax: the whole ``FitState`` plus the metrics history so far.

Layout: ``DIR/checkpoint/step_NNNNNNNN/`` (orbax; written to a temporary name, then renamed)
and ``DIR/checkpoint/history.jsonl``. Only the newest step is kept.
"""
from __future__ import annotations

import json
import pathlib
import shutil

import jax
import orbax.checkpoint as ocp

from dipjax.io import atomic_write_bytes
from dipjax.step import FitState


def _to_tree(state: FitState) -> dict:
    d = {k: getattr(state, k) for k in state.__dataclass_fields__}
    d["key"] = jax.random.key_data(state.key)  # typed PRNG keys are stored as their raw data
    return d


def save(folder, state: FitState, history: list) -> pathlib.Path:
    """Write the state after ``len(history)`` iterations; returns the step folder."""
    root = pathlib.Path(folder).resolve() / "checkpoint"
    root.mkdir(parents=True, exist_ok=True)
    done = int(jax.device_get(state.step))
    path = root / f"step_{done:08d}"
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, _to_tree(state), force=True)
        ckpt.wait_until_finished()
    atomic_write_bytes(root / "history.jsonl",
                       "".join(json.dumps(h) + "\n" for h in history).encode())
    for old in root.glob("step_*"):
        if old != path and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return path


def latest(folder):
    """The newest step folder under ``folder/checkpoint``, or None."""
    steps = sorted((pathlib.Path(folder) / "checkpoint").glob("step_*"))
    return steps[-1].resolve() if steps else None


def restore(folder, like: FitState) -> tuple[FitState, list]:
    """Read the newest checkpoint into a state shaped like ``like``; returns (state, history)."""
    path = latest(folder)
    if path is None:
        raise FileNotFoundError(f"{folder}: no checkpoint found")
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _to_tree(like))
    with ocp.StandardCheckpointer() as ckpt:
        tree = ckpt.restore(path, target)
    tree["key"] = jax.random.wrap_key_data(tree["key"], impl=jax.random.key_impl(like.key))
    history_file = pathlib.Path(folder) / "checkpoint" / "history.jsonl"
    history = [json.loads(line) for line in history_file.read_text().splitlines() if line]
    return FitState(**tree), history
