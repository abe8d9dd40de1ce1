"""JAX's persistent compilation cache, on by default for command-line runs: a second run of the
same preset on the same image size loads its compiled steps instead of compiling them.

Where: ``--compile-cache DIR``, else ``$DIPJAX_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/dipjax/xla`` (``~/.cache/dipjax/xla``). ``DIPJAX_COMPILE_CACHE=off`` or
``--no-compile-cache`` turns it off.

The same folder keeps the convolution library measured faster on this machine and, with
``--measure-convs``, each layer's variant measured fastest (``dipjax.ops.conv_choice``, file
``conv_choices.json``).
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Optional

ENV = "DIPJAX_COMPILE_CACHE"


def default_dir() -> Optional[pathlib.Path]:
    """The cache folder the settings name, or None when the cache is off."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.lower() in ("", "off", "0", "no") else pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "dipjax" / "xla"


def enable(folder) -> None:
    """Cache every compilation that takes over 0.2 s in ``folder`` (created)."""
    import jax

    folder = pathlib.Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def info(folder) -> str:
    """One line: where the cache is, how many entries and bytes it holds, and how many
    convolution layers it has measured choices for on this machine."""
    from dipjax.ops import conv_choice

    folder = pathlib.Path(folder)
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    files = [f for f in files if not f.name.startswith((conv_choice.FILE_NAME, ".conv_choices"))]
    size = sum(f.stat().st_size for f in files)
    layers = len(conv_choice.layers_measured(folder / conv_choice.FILE_NAME))
    return (
        f"compile cache {folder}: {len(files)} entries, {size / 2**20:.1f} MiB; "
        f"{layers} convolution layer(s) measured on this machine"
    )


def clear(folder) -> None:
    shutil.rmtree(folder, ignore_errors=True)
