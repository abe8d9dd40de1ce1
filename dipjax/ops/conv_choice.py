"""Each convolution layer computed the way measured fastest on the running machine, and the
step's convolutions run by the library measured fastest there, the measurements kept in a file
beside the compile cache.

The fixed rules of ``conv.py`` (matrix products below ``SMALL_PIXELS`` output pixels, Winograd's
for 3x3 layers of ``WINOGRAD_PIXELS`` or more with enough channels, else a padded-and-cropped
forward pass with weight gradients in strips of ``crop_strip_pixels``) were tuned on a few
machines; another CPU can prefer one whole convolution, strips or matrix products.
``traced`` traces a step with the choices known for this machine, records its convolutions,
and when some ``Layer.tunable`` layer has none, times it (forward pass and both gradients,
jitted alone, the fastest of a few interleaved rounds) under each of ``conv.libraries()``
(YNNPACK, XLA's default, and Eigen): every variant (``every_variant=True``, the command line's
``--measure-convs``), keeping the fastest (the fixed rule's when within 5 % of it), or the rule's
variant alone (``every_variant=False``, the command line's default: the rules stay, only the
library is chosen). Since the library is an option of the whole compiled step, the step takes
the library whose layers, each by its variant and counted as often as the step computes it,
add up to less (XLA's default unless the other is faster by more than ``MARGIN``), traces
again if that library's choices differ, and returns the options to compile with.
Choices are stored per machine (CPU model and flags, CPUs available, jax and jaxlib versions,
XLA_FLAGS) in the file ``use_file`` names (the command line: ``FILE_NAME`` in its compile
cache) and measured once: later runs, and later steps with the same layers, read them; a
process keeps the library and the variants it chose. Measuring every variant is opt-in: on
the machines where it was tried the rules' choices were as fast (docs/speed.md, "Convolution
variants measured on each machine"); the library was not (docs/speed.md, "Convolutions by Eigen
where YNNPACK is slow"). Measuring the library costs 2-40 s once per machine and image size.

The variants compute the same function up to float rounding, so a choice changes a fit's last
digits, never its result beyond rounding; a run stays reproducible on one machine as long as
the file keeps its choices. The final render and snapshots keep the fixed rules.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pathlib
import platform
import tempfile
import time
from typing import Iterator, Optional

import jax
import jax.numpy as jnp

from dipjax.ops import conv

FILE_NAME = "conv_choices.json"
LOCK_NAME = ".conv_choices.lock"
ROUNDS = 3
BUDGET_S = 0.5
MARGIN = 0.05
DOT_MAX_BYTES = 2**29
_file: Optional[pathlib.Path] = None
_every_variant = True
_memory: dict = {}  # entry key -> entry this process has measured or used
_libraries: dict = {}  # frozenset of layer keys -> library this process chose for them
_last = [conv.LIBRARIES[0]]  # the library this process chose last (its next trace starts there)


class Stopped(Exception):
    """The run asked to stop (``stop()`` true) while layers were measured; those measured in
    full are kept in the file."""


def _check(stop) -> None:
    if stop is not None and stop():
        raise Stopped


def use_file(path, every_variant: bool = True) -> None:
    """Keep measured choices in ``path`` (JSON); None stops measuring (the fixed rules and
    XLA's default library apply). ``every_variant=False``: time only each layer's rule
    variant, under each library (the library is chosen, the variants stay the rules')."""
    global _file, _every_variant
    _file = None if path is None else pathlib.Path(path)
    _every_variant = every_variant
    _memory.clear()
    _libraries.clear()
    _last[0] = conv.LIBRARIES[0]


def entry_key(layer: conv.Layer, library: str) -> str:
    """The layer's name in the file: ``Layer.key``, with the library appended unless it is
    XLA's default (so files written before libraries were measured stay valid)."""
    return layer.key if library == conv.LIBRARIES[0] else f"{layer.key} {library}"


def current_file() -> Optional[pathlib.Path]:
    """The file ``use_file`` named (None: nothing is measured)."""
    return _file


def cpuinfo_fields(text: Optional[str] = None) -> dict:
    """Each field of Linux's /proc/cpuinfo (or of ``text`` in its format) with its first CPU's
    value, e.g. {"model name": "AMD EPYC", "cpu family": "25", "flags": "fpu ...", ...}; empty
    where there is no such file."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            text = ""
    fields: dict = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """What the choices depend on: CPU model and flags, CPUs available, jax and jaxlib versions,
    XLA_FLAGS (the choices apply on the CPU only; the backend is not started to find this)."""
    fields = cpuinfo_fields()
    import jaxlib

    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags") or fields.get("Features") or platform.platform()
    digest = hashlib.sha1((flags + os.environ.get("XLA_FLAGS", "")).encode()).hexdigest()[:8]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} flags:{digest} cpus:{cpus} jax:{jax.__version__} jaxlib:{jaxlib.__version__}"


def _grads(layer: conv.Layer, variant: str, x, w, library: str = "ynnpack"):
    """(x, w) -> both gradients of sum(y * y), y the layer computed by ``variant``, compiled
    with ``library``'s options."""

    def loss(x, w):
        y = conv.conv_variant(x, w, layer.stride, layer.padding, variant, layer.precision)
        return jnp.sum(y * y)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return grads.lower(x, w).compile(conv.compiler_options(library))


def candidates(layer: conv.Layer) -> tuple:
    """The variants worth timing: all of ``layer.variants()`` but a matrix product whose patch
    tensor (k*k times the input) would exceed ``DOT_MAX_BYTES`` (the fit itself never builds
    it unless the rule does); only the rule's when the file in use times rules alone."""
    if not _every_variant:
        return (layer.rule(),)
    n, h, w, c = layer.shape
    ho, wo = layer.out_hw
    patch_bytes = 4 * n * ho * wo * layer.k * layer.k * c
    big = patch_bytes > DOT_MAX_BYTES and layer.rule() != "dot"
    return tuple(v for v in layer.variants() if not (big and v == "dot"))


def measure(
    layer: conv.Layer,
    library: str = "ynnpack",
    rounds: Optional[int] = None,
    budget_s: Optional[float] = None,
    stop=None,
):
    """{variant: milliseconds} for every candidate variant of ``layer`` compiled with
    ``library``: its forward pass and both gradients, jitted alone, the fastest of ``rounds``
    rounds (default ``ROUNDS``; more, up to ``budget_s`` seconds (``BUDGET_S``), for fast
    layers) that each time every variant once, so that the machine's slow moments fall on all
    of them. A variant that fails to compile or run (memory) is left out. Raises ``Stopped``
    between compiles and rounds once ``stop()`` is true."""
    rounds = ROUNDS if rounds is None else rounds
    budget_s = BUDGET_S if budget_s is None else budget_s
    x = jnp.ones(layer.shape, jnp.float32)
    w = jnp.full((layer.k, layer.k, layer.shape[-1], layer.out), 0.01, jnp.float32)
    fns = {}
    for v in candidates(layer):
        _check(stop)
        try:
            f = _grads(layer, v, x, w, library)
            jax.block_until_ready(f(x, w))
            fns[v] = f
        except Exception:  # noqa: BLE001 - e.g. out of memory: that variant is not an option
            continue
    best = {v: float("inf") for v in fns}
    start, done = time.perf_counter(), 0
    while done < rounds or (time.perf_counter() - start < budget_s and done < 10 * rounds):
        _check(stop)
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
    """{entry key: {'choice': variant, 'ms': {variant: ms}}} stored for this machine in
    ``path`` (default: the file in use); see ``entry_key``."""
    path = path or _file
    stored = _load(pathlib.Path(path)).get(machine(), {}) if path else {}
    return {k: e for k, e in stored.items() if isinstance(e, dict) and "choice" in e}


def _split(key: str) -> tuple:
    """An entry key's (``Layer.key``, library): ``entry_key`` undone."""
    for lib in conv.LIBRARIES[1:]:
        if key.endswith(f" {lib}"):
            return key[: -len(lib) - 1], lib
    return key, conv.LIBRARIES[0]


def layers_measured(path=None) -> set:
    """The ``Layer.key`` of every layer measured on this machine in ``path`` (default: the file
    in use), under any library."""
    return {_split(k)[0] for k in entries(path)}


def _complete(layer: conv.Layer, entry) -> bool:
    """Whether a stored entry holds what the file in use measures: a choice, and every one of
    today's ``candidates`` timed or tried (a variant that failed is tried, not timed), so that
    an entry stored before a variant existed, or a rule changed, is measured again."""
    if not (isinstance(entry, dict) and "choice" in entry):
        return False
    done = set(entry.get("ms") or {}) | set(entry.get("tried") or ())
    return set(candidates(layer)) <= done


def _stored() -> dict:
    """The file's entries for this machine, with this process's own first (what it measured
    or used: a process never switches a layer's variant, even when another one rewrites the
    file, and keeps what it measured when the file cannot be written)."""
    return {**entries(), **_memory}


def known(library: str = "ynnpack") -> Optional[dict]:
    """{layer key: variant} for this machine under ``library``, from ``_stored``; None when no
    file is in use, or when it times rules alone (``every_variant=False``: the rules apply)."""
    if _file is None or not _every_variant:
        return None
    split = {_split(k): e["choice"] for k, e in _stored().items()}
    return {key: choice for (key, lib), choice in split.items() if lib == library}


def missing(layers, library: str = "ynnpack") -> list:
    """The distinct tunable ``layers`` with no complete entry under ``library``."""
    stored = _stored()
    return [
        la
        for la in dict.fromkeys(layers)
        if la.tunable() and not _complete(la, stored.get(entry_key(la, library)))
    ]


@contextlib.contextmanager
def _one_at_a_time(folder: pathlib.Path, report=None, stop=None) -> Iterator[None]:
    """Hold an exclusive lock on a file in ``folder`` (the choices file's), so that runs that
    share the file and start together (``--distributed`` processes on one host, two fits)
    measure one after the other, not at once (each would time the others' load). Without a
    lock where the file cannot be made or locked (a file system without ``flock``)."""
    import fcntl

    fd = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if report is not None:
                report("waiting for another process measuring convolutions on this machine")
            while True:  # polled, so that a stop (Ctrl-C) is answered while waiting
                try:
                    _check(stop)
                except Stopped:
                    os.close(fd)
                    raise
                time.sleep(0.2)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
    except OSError:
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def measure_missing(layers, report=None, stop=None) -> None:
    """Measure every layer of ``missing(layers, library)`` under each available library and
    keep its fastest variant in the file (an entry another process completed meanwhile keeps
    that process's choice; processes measure one at a time). ``report(message)`` is told
    first, and told when the file cannot be written (the process then keeps its measurements
    to itself). ``stop``: see ``measure``."""

    def todo():
        return {lib: missing(layers, lib) for lib in conv.libraries()} if _file else {}

    if not any(todo().values()):
        return
    with _one_at_a_time(_file.parent, report, stop):
        _measure(todo(), report, stop)


def _measure(todo: dict, report, stop=None) -> None:
    """Time ``todo``'s {library: layers} and add them to the file."""
    count = len({la for las in todo.values() for la in las})
    if not count:
        return
    if report is not None:
        what = "" if _every_variant else " (its library)"
        report(f"measuring {count} convolution layer(s){what} on this machine once ({_file})")
    measured = {}
    try:
        for lib, las in todo.items():
            for la in las:
                ms = measure(la, lib, stop=stop)
                entry = {"choice": pick(la, ms), "ms": ms, "tried": list(candidates(la))}
                measured[entry_key(la, lib)] = (la, entry)
    finally:  # stopped: the layers measured so far are kept
        if measured:
            _store(measured, report)


def _store(measured: dict, report) -> None:
    """Add ``measured`` {entry key: (layer, entry)} to the file, where it has no complete
    entry for a key (another process may have added one meanwhile)."""
    here = machine()
    stored = _load(_file)  # re-read: another run may have added layers meanwhile
    mine = stored.setdefault(here, {})
    for key, (la, entry) in measured.items():
        if not _complete(la, mine.get(key)):
            mine[key] = entry
        _memory[key] = mine[key]
    try:
        _save(_file, stored)
    except OSError as e:
        if report is not None:
            report(f"cannot keep the measurements in {_file} ({e.strerror or e})")


def library_for(layers) -> str:
    """The library whose stored times for ``layers`` (each tunable one as often as it appears,
    by its chosen variant, or its rule's when the file times rules alone) add up to least;
    XLA's default unless another is faster by more than ``MARGIN``, or when some layer has no
    time under it. A process keeps the library it chose for a set of layers."""
    tunable = [la for la in layers if la.tunable()]
    remembered = frozenset(la.key for la in tunable)
    if remembered in _libraries:
        return _libraries[remembered]
    stored, totals = _stored(), {}
    for lib in conv.libraries():
        total = 0.0
        for la in tunable:
            e = stored.get(entry_key(la, lib)) or {}
            choice = e.get("choice") if _every_variant else la.rule()
            total += (e.get("ms") or {}).get(choice, float("nan"))
        if total == total:  # no NaN: every layer timed
            totals[lib] = total
    default, best = conv.LIBRARIES[0], min(totals, key=totals.get, default=None)
    chosen = best if best and totals[best] * (1 + MARGIN) < totals.get(default, 0.0) else default
    _libraries[remembered] = chosen
    return chosen


def libraries_used() -> list:
    """The libraries this process chose for steps with tunable layers (``traced``; sorted):
    empty when none had any or nothing was measured (XLA's default then ran them)."""
    return sorted({lib for keys, lib in _libraries.items() if keys})


def traced(trace, report=None, stop=None):
    """``trace()`` (a function that traces convolutions, e.g. lowers a jitted step) run with
    the known choices; tunable layers it met with none are measured (under every library),
    the library is chosen for its layers (``library_for``), and it runs again when that
    library's choices for them differ from those it was traced with. Returns (what the last
    ``trace()`` returned, the options to compile it with: ``conv.compiler_options`` of that
    library; without a file of choices, ``conv.codegen_options()``). ``Stopped`` once
    ``stop()`` is true while layers are measured."""
    if _file is None:
        return trace(), conv.codegen_options()
    first = _last[0]
    table = known(first)
    with conv.recording() as seen, conv.conv_choices(table):
        out = trace()
    measure_missing(seen, report, stop)
    library = library_for(seen)
    chosen = known(library)
    stored = _stored()
    for la in seen:  # this process keeps these entries (and so these choices) from now on
        key = entry_key(la, library)
        if key not in _memory and key in stored:
            _memory[key] = stored[key]
    keys = {la.key for la in seen}
    if any((table or {}).get(k) != (chosen or {}).get(k) for k in keys):
        with conv.conv_choices(chosen):
            out = trace()
    _last[0] = library
    return out, conv.compiler_options(library)
