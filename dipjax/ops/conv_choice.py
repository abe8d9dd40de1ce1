"""Each convolution layer computed the way measured fastest on the running machine, the
measurements kept in a file beside the compile cache.

The fixed rules of ``conv.py`` (matrix products below ``SMALL_PIXELS`` output pixels, strips of
``STRIP_PIXELS``) were tuned on one machine; another CPU can prefer one whole convolution, other
strips or matrix products. ``traced`` traces a step with the choices known for this machine,
records its convolutions, and when some ``Layer.tunable`` layer has none, times every variant
of it (forward pass and both gradients, jitted alone, the fastest of a few interleaved
rounds), keeps the fastest (the fixed rule's when within 5 % of it), and traces again.
Choices are stored per machine (CPU model and flags, CPUs available, jax version, device) in
the file ``use_file`` names (the command line: ``FILE_NAME`` in its compile cache) and
measured once: later runs, and later steps with the same layers, read them.

The variants compute the same function up to float rounding, so a choice changes a fit's last
digits, never its result beyond rounding; a run stays reproducible on one machine as long as
the file keeps its choices.
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
_file: Optional[pathlib.Path] = None
_memory: dict = {}  # layer key -> variant measured by this process (its machine)


def use_file(path) -> None:
    """Keep measured choices in ``path`` (JSON); None stops measuring (the fixed rules apply)."""
    global _file
    _file = None if path is None else pathlib.Path(path)
    _memory.clear()


def current_file() -> Optional[pathlib.Path]:
    return _file


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """What the choices depend on: CPU model and flags, CPUs available, jax, device kind."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = hashlib.sha1(fields.get("flags", "").encode()).hexdigest()[:8]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = jax.devices()[0].device_kind
    return f"{model} flags:{flags} cpus:{cpus} jax:{jax.__version__} {device}"


def _grads(layer: conv.Layer, variant: str):
    def loss(x, w):
        y = conv.conv_variant(x, w, layer.stride, layer.padding, variant, layer.precision)
        return jnp.sum(y * y)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def measure(layer: conv.Layer, rounds: int = ROUNDS, budget_s: float = BUDGET_S) -> dict:
    """{variant: milliseconds} for every variant of ``layer``: its forward pass and both
    gradients, jitted alone, the fastest of ``rounds`` rounds (more, up to ``budget_s`` seconds,
    for fast layers) that each time every variant once, so that the machine's slow moments
    fall on all of them."""
    x = jnp.ones(layer.shape, jnp.float32)
    w = jnp.full((layer.k, layer.k, layer.shape[-1], layer.out), 0.01, jnp.float32)
    fns = {v: _grads(layer, v) for v in layer.variants()}
    for f in fns.values():
        jax.block_until_ready(f(x, w))
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
    fastest = min(ms, key=ms.get)
    rule = layer.rule()
    return rule if ms.get(rule, float("inf")) <= ms[fastest] * (1 + MARGIN) else fastest


def _load(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: pathlib.Path, data: dict) -> None:
    # Written whole to a temporary file and renamed: a run stopped mid-write leaves the old file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".conv_choices-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def entries(path=None) -> dict:
    """{layer key: {'choice': variant, 'ms': {variant: ms}}} stored for this machine in ``path``
    (default: the file in use)."""
    path = path or _file
    stored = _load(pathlib.Path(path)).get(machine(), {}) if path else {}
    return {k: e for k, e in stored.items() if isinstance(e, dict) and "choice" in e}


def known() -> Optional[dict]:
    """{layer key: variant} measured on this machine (the file's and this process's); None when
    no file is in use."""
    if _file is None:
        return None
    return {**{k: e["choice"] for k, e in entries().items()}, **_memory}


def missing(layers) -> list:
    """The distinct tunable ``layers`` with no known choice."""
    table = known() or {}
    return [la for la in dict.fromkeys(layers) if la.tunable() and la.key not in table]


def measure_missing(layers, report=None) -> None:
    """Measure every layer of ``missing(layers)`` and keep its fastest variant (in the file
    when one is in use). ``report(message)`` is told first."""
    todo = missing(layers)
    if not todo or _file is None:
        return
    if report is not None:
        report(f"measuring {len(todo)} convolution layer(s) on this machine once ({_file})")
    here, measured = machine(), {}
    for la in todo:
        ms = measure(la)
        measured[la.key] = {"choice": pick(la, ms), "ms": ms}
        _memory[la.key] = measured[la.key]["choice"]
    stored = _load(_file)  # re-read: another run may have added layers meanwhile
    stored.setdefault(here, {}).update(measured)
    try:
        _save(_file, stored)
    except OSError:
        pass  # an unwritable cache costs a measurement next run, nothing else


def traced(trace, report=None):
    """``trace()`` (a function that traces convolutions, e.g. lowers a jitted step) run with
    the known choices; when it met tunable layers with none, they are measured and it runs
    again with them. Returns what the last ``trace()`` returned."""
    if _file is None or conv.current_impl() != "fast":
        return trace()
    with conv.recording() as seen, conv.conv_choices(known()):
        out = trace()
    if not missing(seen):
        return out
    measure_missing(seen, report)
    with conv.conv_choices(known()):
        return trace()
