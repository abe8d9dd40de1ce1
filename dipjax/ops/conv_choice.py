"""Each convolution layer computed the way measured fastest on the running machine, the
measurements kept in a file beside the compile cache.

The fixed rules of ``conv.py`` (matrix products below ``SMALL_PIXELS`` output pixels, above it a
padded-and-cropped forward pass with weight gradients in strips of ``STRIP_PIXELS``) were tuned
on a few machines; another CPU can prefer one whole convolution, strips or matrix products.
``traced`` traces a step with the choices known for this machine, records its convolutions,
and when some ``Layer.tunable`` layer has none, times every variant of it (forward pass and
both gradients, jitted alone, the fastest of a few interleaved rounds), keeps the fastest (the
fixed rule's when within 5 % of it), and traces again.
Choices are stored per machine (CPU model and flags, CPUs available, jax and jaxlib versions,
XLA_FLAGS) in the file ``use_file`` names (the command line, with ``--measure-convs``:
``FILE_NAME`` in its compile cache) and measured once: later runs, and later steps with the
same layers, read them. Off by default: on the machine it was measured on, the choices did not
make the step faster (README, "Convolution variants measured on each machine").

The variants compute the same function up to float rounding, so a choice changes a fit's last
digits, never its result beyond rounding; a run stays reproducible on one machine as long as
the file keeps its choices. The final render and snapshots keep the fixed rules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import platform
import tempfile
import time
from typing import Optional

import jax
import jax.numpy as jnp

from dipjax.ops import conv

FILE_NAME = "conv_choices.json"
ROUNDS = 3
BUDGET_S = 0.5
MARGIN = 0.05
DOT_MAX_BYTES = 2**29
_file: Optional[pathlib.Path] = None
_memory: dict = {}  # layer key -> variant this process has used (measured or read)


def use_file(path) -> None:
    """Keep measured choices in ``path`` (JSON); None stops measuring (the fixed rules apply)."""
    global _file
    _file = None if path is None else pathlib.Path(path)
    _memory.clear()


def current_file() -> Optional[pathlib.Path]:
    """The file ``use_file`` named (None: nothing is measured)."""
    return _file


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """What the choices depend on: CPU model and flags, CPUs available, jax and jaxlib versions,
    XLA_FLAGS (the choices apply on the CPU only; the backend is not started to find this)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    import jaxlib

    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags") or fields.get("Features") or platform.platform()
    digest = hashlib.sha1((flags + os.environ.get("XLA_FLAGS", "")).encode()).hexdigest()[:8]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} flags:{digest} cpus:{cpus} jax:{jax.__version__} jaxlib:{jaxlib.__version__}"


def _grads(layer: conv.Layer, variant: str):
    """jit((x, w) -> both gradients of sum(y * y)), y the layer computed by ``variant``."""

    def loss(x, w):
        y = conv.conv_variant(x, w, layer.stride, layer.padding, variant, layer.precision)
        return jnp.sum(y * y)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def candidates(layer: conv.Layer) -> tuple:
    """The variants worth timing: all of ``layer.variants()`` but a matrix product whose patch
    tensor (k*k times the input) would exceed ``DOT_MAX_BYTES`` (the fit itself never builds
    it unless the rule does)."""
    n, h, w, c = layer.shape
    ho, wo = layer.out_hw
    patch_bytes = 4 * n * ho * wo * layer.k * layer.k * c
    big = patch_bytes > DOT_MAX_BYTES and layer.rule() != "dot"
    return tuple(v for v in layer.variants() if not (big and v == "dot"))


def measure(layer: conv.Layer, rounds: Optional[int] = None, budget_s: Optional[float] = None):
    """{variant: milliseconds} for every candidate variant of ``layer``: its forward pass and
    both gradients, jitted alone, the fastest of ``rounds`` rounds (default ``ROUNDS``; more,
    up to ``budget_s`` seconds (``BUDGET_S``), for fast layers) that each time every variant
    once, so that the machine's slow moments fall on all of them. A variant that fails to
    compile or run (memory) is left out."""
    rounds = ROUNDS if rounds is None else rounds
    budget_s = BUDGET_S if budget_s is None else budget_s
    x = jnp.ones(layer.shape, jnp.float32)
    w = jnp.full((layer.k, layer.k, layer.shape[-1], layer.out), 0.01, jnp.float32)
    fns = {}
    for v in candidates(layer):
        try:
            f = _grads(layer, v)
            jax.block_until_ready(f(x, w))
            fns[v] = f
        except Exception:  # noqa: BLE001 - e.g. out of memory: that variant is not an option
            continue
    best = {v: float("inf") for v in fns}
    start, done = time.perf_counter(), 0
    while done < rounds or (time.perf_counter() - start < budget_s and done < 10 * rounds):
        for v, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(x, w))
            best[v] = min(best[v], time.perf_counter() - t)
        done += 1
    return {v: round(s * 1e3, 3) for v, s in best.items()}


def pick(layer: conv.Layer, ms: dict) -> str:
    """The fastest variant, unless the fixed rule's is within ``MARGIN`` of it (a difference
    that small is the machine's noise, and the rule's choice then stays)."""
    if not ms:
        return layer.rule()
    fastest = min(ms, key=ms.get)
    rule = layer.rule()
    return rule if ms.get(rule, float("inf")) <= ms[fastest] * (1 + MARGIN) else fastest


def _load(path: pathlib.Path) -> dict:
    """The file's {machine: {layer key: entry}}; {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {m: e for m, e in data.items() if isinstance(e, dict)}


def _save(path: pathlib.Path, data: dict) -> None:
    """Write ``data`` whole to a temporary file and rename it: a run stopped mid-write, or a
    failed write, leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".conv_choices-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def entries(path=None) -> dict:
    """{layer key: {'choice': variant, 'ms': {variant: ms}}} stored for this machine in ``path``
    (default: the file in use)."""
    path = path or _file
    stored = _load(pathlib.Path(path)).get(machine(), {}) if path else {}
    return {k: e for k, e in stored.items() if isinstance(e, dict) and "choice" in e}


def known() -> Optional[dict]:
    """{layer key: variant} for this machine: the file's, with what this process has used first
    (a process never switches a layer's variant, even when another one rewrites the file);
    None when no file is in use."""
    if _file is None:
        return None
    return {**{k: e["choice"] for k, e in entries().items()}, **_memory}


def missing(layers) -> list:
    """The distinct tunable ``layers`` with no known choice."""
    table = known() or {}
    return [la for la in dict.fromkeys(layers) if la.tunable() and la.key not in table]


def measure_missing(layers, report=None) -> None:
    """Measure every layer of ``missing(layers)`` and keep its fastest variant in the file (a
    layer another process stored meanwhile keeps that process's choice). ``report(message)`` is
    told first, and told when the file cannot be written."""
    todo = missing(layers)
    if not todo or _file is None:
        return
    if report is not None:
        report(f"measuring {len(todo)} convolution layer(s) on this machine once ({_file})")
    here, measured = machine(), {}
    for la in todo:
        ms = measure(la)
        measured[la.key] = {"choice": pick(la, ms), "ms": ms}
    stored = _load(_file)  # re-read: another run may have added layers meanwhile
    mine = stored.setdefault(here, {})
    for key, entry in measured.items():
        if not (isinstance(mine.get(key), dict) and "choice" in mine[key]):
            mine[key] = entry
        _memory[key] = mine[key]["choice"]
    try:
        _save(_file, stored)
    except OSError as e:
        if report is not None:
            report(f"cannot keep the measurements in {_file} ({e.strerror or e})")


def traced(trace, report=None):
    """``trace()`` (a function that traces convolutions, e.g. lowers a jitted step) run with
    the known choices; when it met tunable layers with none, they are measured and it runs
    again with them. Returns what the last ``trace()`` returned."""
    if _file is None:
        return trace()
    table = known()
    with conv.recording() as seen, conv.conv_choices(table):
        out = trace()
    _memory.update({la.key: table[la.key] for la in seen if la.key in table})
    if not missing(seen):
        return out
    measure_missing(seen, report)
    with conv.conv_choices(known()):
        return trace()
