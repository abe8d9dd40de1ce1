"""Checkpoints of a run: the state of the batch of fits in flight and the results of the finished
fits, so that an interrupted run of any kind (one fit, seeds, many images) resumes exactly.

Layout under ``DIR/checkpoint/``:
- ``state/<n>/``: orbax, the newest save only (older ones are deleted once it is complete); it
  holds the batch's whole ``FitState`` (``state``) and a JSON record (``meta``): the run id, the
  batch's fits as (problem index, seed) pairs, whether they were stacked, the iterations done,
  each fit's metrics history and the state's format (``STATE_FORMAT``).
- ``done/p<index>_s<seed>.npz`` and ``.json``: a finished fit's outputs (float32) and its history,
  final metrics and early-stopping record, written atomically when the fit ends.

Saving is asynchronous: ``save`` returns once the state is copied to the host, and the write
goes on while the next steps run; it is waited for before the next save and at ``close``.
"""

from __future__ import annotations

import io as _io
import json
import pathlib
import re
import shutil
import zipfile
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from dipjax.io import InputError, atomic_write_bytes
from dipjax.step import FitState

# 3: the early-stopping window as columns (``early_stop.init``); 2: the weights as one vector
# (``step.flatten_params``); 1 (checkpoints without the field): the weights and Adam's moments
# as trees of arrays.
STATE_FORMAT = 3


def resumable(root: pathlib.Path) -> bool:
    """Whether the checkpoint folder ``root`` holds something to resume: a saved state or a
    finished fit's record (not a folder emptied by hand, or by a crash before its first save
    completed)."""
    state, done = root / "state", root / "done"
    saved = state.is_dir() and any(p.name.isdigit() for p in state.iterdir())
    return saved or (done.is_dir() and any(done.glob("p*_s*.json")))


def _to_tree(state: FitState) -> dict:
    d = {k: getattr(state, k) for k in state.__dataclass_fields__}
    d["key"] = jax.random.key_data(state.key)  # typed PRNG keys are stored as their raw data
    return d


class Checkpointer:
    """One per run and folder. ``run_id`` ties the checkpoint to the run that wrote it."""

    def __init__(self, folder, run_id: str, name: str = "checkpoint"):
        self.root = pathlib.Path(folder).resolve() / name
        self.run_id = run_id
        self._manager = None
        self._count = 0

    def _mgr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            self.root.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=True
            )
            self._manager = ocp.CheckpointManager(self.root / "state", options=options)
            self._count = (self._manager.latest_step() or 0) + 1
        return self._manager

    def save(self, fits, stacked: bool, state: FitState, histories: list) -> None:
        """Save the batch ``fits`` after ``len(histories[0])`` iterations (asynchronously)."""
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        meta = {
            "run_id": self.run_id,
            "fits": [list(f) for f in fits],
            "stacked": stacked,
            "iters": len(histories[0]),
            "histories": histories,
            "state_format": STATE_FORMAT,
        }
        mgr.save(
            self._count,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_to_tree(state)), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._count += 1

    def current(self) -> Optional[dict]:
        """The newest batch record (``fits``, ``stacked``, ``iters``, ``histories``), or None."""
        if not (self.root / "state").is_dir():
            return None
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        step = mgr.latest_step()
        if step is None:
            return None
        try:
            meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
        except Exception as e:  # noqa: BLE001 - orbax's own, from JSON to TensorStore
            raise self._damaged(e) from None
        self._check_run(meta.get("run_id"))
        written = meta.pop("state_format", 1)
        if written != STATE_FORMAT:
            raise InputError(
                f"{self.root}: the checkpoint was written by another version of dipjax (state "
                f"format {written}, this version's {STATE_FORMAT}); nothing was resumed"
            )
        meta["fits"] = [tuple(f) for f in meta["fits"]]
        return meta

    def restore(self, like: FitState) -> FitState:
        """The newest batch state, shaped (and placed) like ``like``."""
        import orbax.checkpoint as ocp

        mgr = self._mgr()
        target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _to_tree(like))
        try:
            tree = mgr.restore(
                mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )["state"]
        except Exception as e:  # noqa: BLE001 - orbax's and TensorStore's errors, many kinds
            first = (str(e).splitlines() or [type(e).__name__])[0]
            # orbax: the stored tree's structure or shapes differ; TensorStore's status codes
            # (DATA_LOSS: ..., NOT_FOUND: ...) are damaged or missing files
            mismatch = isinstance(e, ValueError) and not isinstance(e, json.JSONDecodeError)
            if not mismatch or re.match(r"[A-Z_]+: ", first):
                raise self._damaged(e) from None
            raise InputError(
                f"{self.root}: the checkpoint's state is not shaped like this run's: "
                f"{first[:300]}; nothing was resumed"
            ) from None
        # Restored arrays are committed to their device; a fresh state is not. Match ``like``,
        # or the chunk lowers to a different program and misses the compile cache.
        tree = jax.tree_util.tree_map(
            lambda x, y: x if getattr(y, "committed", True) else jnp.asarray(np.asarray(x)),
            tree,
            _to_tree(like),
        )
        tree["key"] = jax.random.wrap_key_data(tree["key"], impl=jax.random.key_impl(like.key))
        return FitState(**tree)

    def _damaged(self, e: Exception) -> InputError:
        first = (str(e).splitlines() or [""])[0][:200]
        return InputError(
            f"{self.root}: the checkpoint cannot be read, it may be damaged "
            f"({type(e).__name__}: {first}); nothing was resumed"
        )

    def finish(self, index: int, seed: int, arrays: dict, record: dict) -> None:
        """Keep a finished fit: ``arrays`` (name -> float32 array), ``record`` (JSON-able)."""
        done = self.root / "done"
        done.mkdir(parents=True, exist_ok=True)
        buf = _io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(done / f"p{index}_s{seed}.npz", buf.getvalue())
        atomic_write_bytes(
            done / f"p{index}_s{seed}.json", json.dumps(dict(record, run_id=self.run_id)).encode()
        )

    def finished(self) -> dict:
        """{(index, seed): (arrays, record)} of the fits kept by ``finish``."""
        out = {}
        for path in sorted((self.root / "done").glob("p*_s*.json")):
            try:
                record = json.loads(path.read_text())
                with np.load(path.with_suffix(".npz")) as z:
                    arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise self._damaged(e) from None
            self._check_run(record.pop("run_id", None))
            index, seed = path.stem[1:].split("_s")
            out[(int(index), int(seed))] = (arrays, record)
        return out

    def _check_run(self, run_id) -> None:
        if run_id != self.run_id:
            raise InputError(
                f"{self.root}: the checkpoint belongs to another run (run id "
                f"{run_id}, this run is {self.run_id}); nothing was resumed"
            )

    def exists(self) -> bool:
        return resumable(self.root)

    def wait(self) -> None:
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def remove(self) -> None:
        """Delete the checkpoint (a run that ended has nothing to resume)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
