"""Per-layer convolution variants and the convolution library measured on the running machine:
measured once, kept in the file per machine, reused by later traces and runs, and actually used
by the traced and compiled step."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api
from dipjax.engine import fit_problem
from dipjax.ops import conv, conv_choice
from dipjax.step import compiled_chunk

X = jax.ShapeDtypeStruct((1, 24, 24, 4), jnp.float32)
W1 = jnp.full((3, 3, 4, 8), 0.1)
W2 = jnp.full((3, 3, 8, 8), 0.1)
W3 = jnp.full((1, 1, 8, 3), 0.1)
# The two 3x3 layers of ``net`` (24x24 outputs: tunable); its 1x1 layer is a product by rule.
L1 = conv.Layer((1, 24, 24, 4), 3, 8, 1, 1, "f32")
L2 = conv.Layer((1, 24, 24, 8), 3, 8, 1, 1, "f32")


def net(x):
    y = jnp.tanh(conv.conv2d(x, W1, 1, 1))
    return conv.conv2d(conv.conv2d(y, W2, 1, 1), W3)


def lower():
    # A fresh function each time: jit's trace cache would keep the first tracing's choices.
    return jax.jit(lambda x: net(x)).lower(X)


def traced(*args):
    """conv_choice.traced's lowering (its compile options apart)."""
    return conv_choice.traced(*args)[0]


LIBS = conv.libraries()


def ops(lowered) -> tuple:
    """(convolutions, matrix products) in a lowered function's StableHLO."""
    text = lowered.as_text()
    return text.count("stablehlo.convolution"), text.count("stablehlo.dot_general")


@pytest.fixture
def measured(tmp_path, monkeypatch):
    """A fresh choices file, and the list of layers ``measure`` was asked for."""
    before = conv_choice.current_file()
    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME)
    calls = []
    real = conv_choice.measure
    monkeypatch.setattr(
        conv_choice,
        "measure",
        lambda la, lib="ynnpack", **kw: calls.append(la) or real(la, lib, **kw),
    )
    yield calls
    conv_choice.use_file(before)


def _write(path, choices, eigen_ms=None):
    """The file with these {Layer: variant} choices under XLA's default library, every variant
    timed 1 ms; with ``eigen_ms``, the same under Eigen, every variant timed that."""
    entries = {}
    for la, v in choices.items():
        for lib, ms in (("ynnpack", 1.0), ("eigen", eigen_ms)):
            if ms is not None:
                times = dict.fromkeys([*la.variants(), v], ms)
                entries[conv_choice.entry_key(la, lib)] = {"choice": v, "ms": times}
    path.write_text(json.dumps({conv_choice.machine(): entries}))


def test_layers_are_measured_once_kept_per_machine_and_reused(measured):
    told = []
    conv_choice.traced(lower, told.append)
    assert measured == [L1, L2] * len(LIBS)  # the 1x1 layer is not measured
    assert told and "2 convolution layer(s)" in told[0]
    stored = json.loads(conv_choice.current_file().read_text())
    entries = stored[conv_choice.machine()]
    keys = {conv_choice.entry_key(la, lib) for la in (L1, L2) for lib in LIBS}
    assert set(entries) == keys and L1.key in keys
    for layer in (L1, L2):
        for lib in LIBS:
            e = entries[conv_choice.entry_key(layer, lib)]
            assert set(e["ms"]) == set(layer.variants()) and all(t > 0 for t in e["ms"].values())
            assert e["choice"] == conv_choice.pick(layer, e["ms"])
    conv_choice.traced(lower)  # the same process again
    conv_choice.use_file(conv_choice.current_file())  # forgets this process's memory
    told.clear()
    conv_choice.traced(lower, told.append)  # a later run: the file alone
    assert measured == [L1, L2] * len(LIBS) and told == []


def test_the_traced_function_computes_each_layer_by_its_stored_choice(measured):
    path = conv_choice.current_file()
    _write(path, {L1: "xla", L2: "xla"}, eigen_ms=1.0)
    assert ops(traced(lower)) == (2, 1)
    _write(path, {L1: "dot", L2: "dot"}, eigen_ms=1.0)
    conv_choice.use_file(path)
    assert ops(traced(lower)) == (0, 3)
    _write(path, {L1: "dot", L2: "fft"}, eigen_ms=1.0)  # not a variant: the rule
    conv_choice.use_file(path)
    assert L2.rule() == "xla" and ops(traced(lower)) == (1, 2)
    assert measured == []


def test_another_machines_choices_and_a_broken_file_are_not_used(measured):
    path = conv_choice.current_file()
    path.write_text(json.dumps({"another CPU": {L1.key: {"choice": "dot"}}}))
    conv_choice.traced(lower)
    assert measured == [L1, L2] * len(LIBS)
    assert set(json.loads(path.read_text())) == {"another CPU", conv_choice.machine()}
    path.write_text("{ not json")
    conv_choice.use_file(path)
    conv_choice.traced(lower)
    assert len(measured) == 4 * len(LIBS)
    assert conv_choice.machine() in json.loads(path.read_text())


def test_nothing_is_measured_without_a_file_or_off_the_fast_implementation(measured, monkeypatch):
    traces = []

    def counted():
        traces.append(1)
        return lower()

    with conv.conv_impl("xla"):
        assert ops(traced(counted)) == (3, 0)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # auto: xla on accelerators
    conv_choice.traced(counted)
    monkeypatch.undo()
    conv_choice.use_file(None)
    conv_choice.traced(counted)
    assert measured == [] and len(traces) == 3  # each traced once: nothing to measure


def test_a_layer_too_big_for_patches_is_not_timed_as_one(monkeypatch):
    big = conv.Layer((1, 130, 130, 132), 3, 128, 1, 0, "f32")
    assert "dot" in conv_choice.candidates(big)  # 9 x 130 x 130 x 132 floats: 80 MB
    monkeypatch.setattr(conv_choice, "DOT_MAX_BYTES", 2**26)
    assert "dot" not in conv_choice.candidates(big) and "xla" in conv_choice.candidates(big)
    small = conv.Layer((1, 10, 10, 132), 3, 128, 1, 0, "f32")  # the rule is a dot: kept
    assert small.rule() == "dot" and "dot" in conv_choice.candidates(small)


def test_a_rule_within_the_margin_of_the_fastest_stays():
    big = conv.Layer((1, 130, 130, 132), 3, 128, 1, 0, "f32")
    assert big.rule() == "winograd-4"
    rule = big.rule()
    assert conv_choice.pick(big, {"xla": 100.0, rule: 104.0, "dot": 200.0}) == rule
    assert conv_choice.pick(big, {"xla": 100.0, rule: 106.0, "dot": 200.0}) == "xla"
    assert not conv.Layer((1, 10, 10, 8), 1, 8, 1, 0, "f32").tunable()  # 1x1
    assert not conv.Layer((1, 8, 8, 8), 3, 8, 1, 1, "f32").tunable()  # 64 output pixels


def test_a_fit_measures_its_layers_once_uses_them_and_reruns_bit_identically(tmp_path, monkeypatch):
    # Timings made up so that a matrix product wins every layer: the fit must then run with no
    # XLA convolution at all, and a second run (the file alone) must give the same bits.
    asked = []
    monkeypatch.setattr(
        conv_choice,
        "measure",
        lambda la, lib, stop=None: (
            asked.append(la)
            or {
                v: (1.0 if v == "dot" else 9.0) / (1 if lib == "ynnpack" else 2)
                for v in la.variants()
            }
        ),
    )
    before = conv_choice.current_file()
    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME)
    try:
        p = tiny_preset("denoise", iters=4, crop=0)
        prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=1)
        lowered = []
        real = conv_choice.traced
        monkeypatch.setattr(
            conv_choice,
            "traced",
            lambda t, r=None, s=None: lowered.append(real(t, r, s)) or lowered[-1],
        )
        a = fit_problem(prob, p, seed=1)
        n = len(asked)
        assert n > 0 and all(la.tunable() for la in asked)
        keys = {conv_choice.entry_key(la, lib) for la in asked for lib in LIBS}
        assert set(conv_choice.entries()) == keys
        assert all(e["choice"] == "dot" for e in conv_choice.entries().values())
        assert lowered and all(ops(x)[0] == 0 for x, _ in lowered)  # no convolution left
        assert all(o == conv.compiler_options("eigen") for _, o in lowered)  # Eigen timed faster
        conv_choice.use_file(conv_choice.current_file())
        b = fit_problem(prob, p, seed=1)
        assert len(asked) == n
        np.testing.assert_array_equal(a.output, b.output)
    finally:
        conv_choice.use_file(before)


def test_every_chunk_length_is_traced_with_the_choices_of_its_time(measured):
    # make_runner jits the step for chunks of several steps; jit's trace cache must not hand a
    # later lowering the jaxpr traced under earlier choices.
    path, x = conv_choice.current_file(), np.ones(X.shape, np.float32)

    def step(state, batch):
        return state + jnp.sum(net(batch + state)), {"s": state}

    counts = []
    for choice in ("xla", "dot"):
        _write(path, {L1: choice, L2: choice}, eigen_ms=1.0)
        conv_choice.use_file(path)
        for n in (1, 2):
            run, _ = compiled_chunk(step, n, jnp.float32(0), x)
            counts.append(run.as_text().count(" convolution("))
    assert counts[0] > 0 and counts[1] == 2 * counts[0]
    assert counts[2:] == [0, 0] and measured == []


def test_a_stop_while_measuring_keeps_the_layers_measured_and_compiles_nothing(measured):
    # The stop turns true as the second layer's measuring starts (Ctrl-C in a first run).
    path, x = conv_choice.current_file(), np.ones(X.shape, np.float32)

    def step(state, batch):
        return state + jnp.sum(net(batch + state)), {"s": state}

    run, seconds = compiled_chunk(step, 1, jnp.float32(0), x, stop=lambda: len(measured) > 1)
    assert run is None and seconds > 0 and measured == [L1, L2]
    entries = json.loads(path.read_text())[conv_choice.machine()]
    assert list(entries) == [conv_choice.entry_key(L1, LIBS[0])]  # L2 not measured in full
    with pytest.raises(conv_choice.Stopped):
        conv_choice.traced(lower, None, lambda: True)
    assert measured == [L1, L2, L2]  # the file's L1 is not measured again
    run, _ = compiled_chunk(step, 1, jnp.float32(0), x, stop=lambda: False)
    entries = json.loads(path.read_text())[conv_choice.machine()]
    assert run is not None and measured[:3] == [L1, L2, L2]
    assert set(entries) == {conv_choice.entry_key(la, lib) for la in (L1, L2) for lib in LIBS}


WIDE = jnp.full((3, 3, 32, 32), 0.01)
L_WIDE = conv.Layer((1, 24, 24, 32), 3, 32, 1, 1, "f32")


def conv_callers(text: str) -> list:
    """For each convolution of an optimized HLO module: 'ENTRY' if the entry computation runs
    it, else the name of the fusion instruction that calls its computation."""
    callers, computation = [], None
    for line in text.splitlines():
        if line.endswith("{") and not line.startswith(" "):
            computation = "ENTRY" if line.startswith("ENTRY") else line.split()[0]
        elif " convolution(" in line:
            if computation == "ENTRY":
                callers.append("ENTRY")
            else:
                calls = re.compile(rf"calls={re.escape(computation)}(?![\w.])")
                call = next(x for x in text.splitlines() if calls.search(x))
                callers.append(call.split("=")[0].strip().lstrip("%").split(".")[0])
    return callers


def wide_step(state, batch):
    # 32 channels: YNNPACK takes the convolution (it leaves those of <= 16 channels to XLA);
    # its output not reduced (a YNNPACK reduction would take in the convolution too).
    return state + 1.0, {"y": conv.conv2d(batch + state, WIDE, 1, 1)}


@pytest.mark.skipif(len(LIBS) < 2, reason="this jaxlib offers one convolution library")
@pytest.mark.parametrize("eigen_ms, library", [(0.5, "eigen"), (0.97, "ynnpack"), (2.0, "ynnpack")])
def test_the_step_is_compiled_with_the_library_measured_faster(measured, eigen_ms, library):
    # Eigen must beat XLA's default (1 ms per layer here) by more than the margin to be taken.
    path, x = conv_choice.current_file(), np.ones(L_WIDE.shape, np.float32)
    _write(path, {L_WIDE: "xla"}, eigen_ms=eigen_ms)
    conv_choice.use_file(path)
    assert conv_choice.library_for([L_WIDE, L_WIDE]) == library
    lowered, options = conv_choice.traced(lambda: jax.jit(wide_step).lower(jnp.float32(0), x))
    assert options == conv.compiler_options(library)
    run, _ = compiled_chunk(wide_step, 1, jnp.float32(0), x)
    assert conv_callers(run.as_text()) == (["ynn_fusion"] if library == "ynnpack" else ["ENTRY"])
    assert measured == []


@pytest.mark.skipif(len(LIBS) < 2, reason="this jaxlib offers one convolution library")
def test_a_layer_untimed_under_a_library_keeps_xla_default(measured):
    path = conv_choice.current_file()
    _write(path, {L1: "xla", L2: "xla"})  # nothing stored under Eigen
    conv_choice.use_file(path)
    assert conv_choice.library_for([L1, L2]) == "ynnpack"


def test_without_every_variant_only_each_rule_is_timed_under_each_library(tmp_path, monkeypatch):
    before = conv_choice.current_file()
    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME, every_variant=False)
    try:
        told = []
        conv_choice.traced(lower, told.append)
        entries = conv_choice.entries()
        assert set(entries) == {conv_choice.entry_key(la, lib) for la in (L1, L2) for lib in LIBS}
        for la in (L1, L2):
            for lib in LIBS:
                e = entries[conv_choice.entry_key(la, lib)]
                assert list(e["ms"]) == [la.rule()] and e["choice"] == la.rule()
        assert "(its library)" in told[0]
        # --measure-convs later: the same file, every variant now measured
        conv_choice.use_file(conv_choice.current_file())
        conv_choice.traced(lower)
        assert set(conv_choice.entries()[L1.key]["ms"]) == set(L1.variants())
    finally:
        conv_choice.use_file(before)


def test_timing_rules_alone_keeps_the_rules_even_where_variants_were_measured(measured):
    path = conv_choice.current_file()
    _write(path, {L1: "dot", L2: "dot"}, eigen_ms=1.0)  # an earlier --measure-convs run
    conv_choice.use_file(path, every_variant=False)
    assert L1.rule() == L2.rule() == "xla"
    assert ops(traced(lower)) == (2, 1) and measured == []


def test_a_variant_that_failed_does_not_get_its_layer_measured_again(tmp_path, monkeypatch):
    # A variant that cannot run (out of memory, say) is left out of the times; the entry must
    # still count as complete, or every later run would time the layer again.
    asked = []
    monkeypatch.setattr(
        conv_choice,
        "measure",
        lambda la, lib, stop=None: (
            asked.append(la) or {v: 1.0 for v in la.variants() if v != "dot"}
        ),
    )
    before = conv_choice.current_file()
    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME)
    try:
        conv_choice.traced(lower)
        n = len(asked)
        assert n == 2 * len(LIBS)
        conv_choice.use_file(conv_choice.current_file())  # a later run
        conv_choice.traced(lower)
        assert len(asked) == n
    finally:
        conv_choice.use_file(before)


@pytest.mark.parametrize("every_variant", [True, False])
def test_an_entry_stored_before_a_variant_or_rule_existed_is_measured_again(
    tmp_path, every_variant
):
    # Entries from before `winograd-4` existed lack its time; when the rule is `winograd-4` (or
    # every variant is measured) such an entry must not stand in for a measurement.
    before = conv_choice.current_file()
    path = tmp_path / conv_choice.FILE_NAME
    big = conv.Layer((1, 66, 66, 128), 3, 128, 1, 0, "f32")
    assert big.rule() == "winograd-4"
    try:
        for tried in ([], ["winograd-4"]):  # a variant that failed counts as tried
            old = {v: 1.0 for v in big.variants() if v != "winograd-4"}
            entry = {"choice": "crop", "ms": old, "tried": tried}
            path.write_text(json.dumps({conv_choice.machine(): {big.key: entry}}))
            conv_choice.use_file(path, every_variant=every_variant)
            assert conv_choice.missing([big]) == ([] if tried else [big])
            entry["ms"] = {**old, "winograd-4": 1.0}
            path.write_text(json.dumps({conv_choice.machine(): {big.key: entry}}))
            conv_choice.use_file(path, every_variant=every_variant)
            assert conv_choice.missing([big]) == []
    finally:
        conv_choice.use_file(before)


@pytest.mark.skipif(len(LIBS) < 2, reason="this jaxlib offers one convolution library")
def test_a_process_keeps_the_library_it_chose_when_the_file_changes(measured):
    path = conv_choice.current_file()
    _write(path, {L1: "xla", L2: "xla"}, eigen_ms=0.5)
    conv_choice.use_file(path)
    assert conv_choice.traced(lower)[1] == conv.compiler_options("eigen")
    _write(path, {L1: "xla", L2: "xla"}, eigen_ms=2.0)  # another process rewrote the times
    assert conv_choice.traced(lower)[1] == conv.compiler_options("eigen")
    conv_choice.use_file(path)  # a later run reads the new times
    assert conv_choice.traced(lower)[1] == conv.compiler_options("ynnpack")


def test_runs_started_together_measure_one_after_the_other(tmp_path, monkeypatch):
    # The second run waits for the first's measurements (lock file), then finds nothing missing:
    # measuring at once, each would time the other's load.
    import threading

    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME, every_variant=False)
    started, release, calls, told = threading.Event(), threading.Event(), [], []

    def fake(la, lib="ynnpack", stop=None):
        calls.append((la, lib))
        started.set()
        assert release.wait(30)
        return {la.rule(): 1.0}

    monkeypatch.setattr(conv_choice, "measure", fake)
    first = threading.Thread(target=conv_choice.measure_missing, args=([L1, L2],))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=conv_choice.measure_missing, args=([L1, L2], told.append))
    second.start()
    second.join(1.0)
    try:
        assert second.is_alive() and len(calls) == 1  # waiting on the first, measuring nothing
    finally:
        release.set()
        first.join(30)
        second.join(30)
    assert sorted(calls, key=str) == sorted([(la, lib) for la in (L1, L2) for lib in LIBS], key=str)
    assert told == ["waiting for another process measuring convolutions on this machine"]
    assert len(conv_choice.entries()) == 2 * len(LIBS)


def test_a_stop_while_waiting_for_another_process_measuring_is_answered(tmp_path, monkeypatch):
    import threading
    import time

    conv_choice.use_file(tmp_path / conv_choice.FILE_NAME, every_variant=False)
    started, release, calls = threading.Event(), threading.Event(), []

    def fake(la, lib="ynnpack", stop=None):
        calls.append(la)
        started.set()
        assert release.wait(30)
        return {la.rule(): 1.0}

    monkeypatch.setattr(conv_choice, "measure", fake)
    first = threading.Thread(target=conv_choice.measure_missing, args=([L1],))
    first.start()
    try:
        assert started.wait(30)
        t0 = time.monotonic()
        with pytest.raises(conv_choice.Stopped):
            conv_choice.measure_missing([L2], None, lambda: time.monotonic() > t0 + 0.3)
        assert time.monotonic() - t0 < 5 and calls == [L1]  # stopped waiting, measured nothing
    finally:
        release.set()
        first.join(30)


def test_a_run_records_the_library_only_of_steps_with_measured_layers(measured):
    # A step with no tunable layer (a 1x1 convolution: a product by rule) chose nothing.
    w = jnp.full((1, 1, 4, 3), 0.1)
    conv_choice.traced(lambda: jax.jit(lambda x: conv.conv2d(x, w)).lower(X))
    assert conv_choice.libraries_used() == [] and measured == []
    _write(conv_choice.current_file(), {L1: L1.rule(), L2: L2.rule()}, eigen_ms=0.5)
    conv_choice.traced(lower)
    assert conv_choice.libraries_used() == (["eigen"] if "eigen" in LIBS else ["ynnpack"])
