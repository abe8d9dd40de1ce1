"""The convolution implementations against a direct numpy sum and XLA's own convolution
gradients."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipjax.ops import conv, winograd


def numpy_conv(x, w, stride, padding):
    """Cross-correlation by the definition: y[n,i,j,o] = sum x[n, s*i+a, s*j+b, c] w[a,b,c,o]."""
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    k = w.shape[0]
    ho, wo = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    y = np.zeros((x.shape[0], ho, wo, w.shape[-1]), np.float64)
    for a in range(k):
        for b in range(k):
            win = x[
                :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride
            ]
            y += np.einsum("nhwc,co->nhwo", win, w[a, b])
    return y


CASES = [  # (H, W, in, out, k, stride, padding)
    (13, 11, 5, 6, 3, 1, 1),
    (13, 10, 4, 3, 3, 2, 1),
    (9, 12, 3, 4, 5, 1, 2),
    (14, 9, 6, 7, 1, 1, 0),
    (4, 4, 3, 2, 3, 1, 1),
]


@pytest.fixture(autouse=True)
def small_strips(monkeypatch):
    # Strips of 16 output pixels, so that these small maps are split, with a ragged last strip.
    monkeypatch.setattr(conv, "STRIP_PIXELS", 16)
    monkeypatch.setattr(conv, "SMALL_PIXELS", 16)
    monkeypatch.setattr(conv, "STRIP_CHOICES", (16, 40))


def _arrays(case, seed=0):
    h, w, cin, cout, k, _, _ = case
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(2, h, w, cin)).astype(np.float32),
        rng.normal(size=(k, k, cin, cout)).astype(np.float32),
    )


@pytest.mark.parametrize("impl", ["xla", "fast", "dot"])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_definition(impl, case):
    x, w = _arrays(case)
    stride, padding = case[5], case[6]
    with conv.conv_impl(impl):
        y = jax.jit(lambda x, w: conv.conv2d(x, w, stride, padding))(x, w)
    np.testing.assert_allclose(
        np.asarray(y), numpy_conv(x, w, stride, padding), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("impl", ["fast", "dot"])
@pytest.mark.parametrize("case", CASES)
def test_gradients_match_xla(impl, case):
    x, w = _arrays(case)
    stride, padding = case[5], case[6]
    r = np.random.default_rng(1).normal(size=numpy_conv(x, w, stride, padding).shape)

    def grads(name):
        def loss(x, w):
            with conv.conv_impl(name):
                return jnp.sum(conv.conv2d(x, w, stride, padding) * r)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)

    for got, want in zip(grads(impl), grads("xla")):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_every_variant_a_layer_can_be_measured_with_computes_the_same_function(case):
    x, w = _arrays(case)
    stride, padding = case[5], case[6]
    y_def = numpy_conv(x, w, stride, padding)
    r = np.random.default_rng(1).normal(size=y_def.shape)
    layer = conv.Layer(x.shape, w.shape[0], w.shape[-1], stride, padding, "f32")
    assert layer.out_hw == y_def.shape[1:3]

    def run(variant):
        def loss(x, w):
            y = conv.conv_variant(x, w, stride, padding, variant)
            return jnp.sum(y * r), y

        (_, y), g = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w)
        return y, *g

    variants = layer.variants()
    assert variants[:2] == ("xla", "dot") and layer.rule() in variants
    if case[0] * case[1] > 40:
        assert "strips-16" in variants  # the map is split into strips of 16 pixels
    want = run("xla")
    np.testing.assert_allclose(np.asarray(want[0]), y_def, rtol=1e-4, atol=1e-4)
    for v in variants[1:]:
        for got, ref in zip(run(v), want):
            np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown convolution variant"):
        conv.conv_variant(x, w, stride, padding, "fft")


def test_strips_really_split_the_map_and_crop_only_its_weight_gradient():
    x, w = _arrays(CASES[0])  # 13x11 output, 16-pixel strips

    def convolutions(variant, grad=False):
        def f(x, w):
            return conv.conv_variant(x, w, 1, 1, variant)

        g = jax.grad(lambda x, w: jnp.sum(f(x, w)), 1) if grad else f
        return jax.jit(g).lower(x, w).as_text().count("convolution")

    assert convolutions("strips-16") >= 2
    assert convolutions("crop") == 1  # one padded convolution, cropped
    assert convolutions("crop", grad=True) >= 1 + 1 + 2  # forward, input gradient, strips
    assert conv.Layer(x.shape, 3, 7, 1, 1, "f32").rule() == "crop"


def test_crop_strips_shrink_with_the_input_channels(monkeypatch):
    monkeypatch.setattr(conv, "STRIP_PIXELS", 2048)
    assert [conv.crop_strip_pixels(c) for c in (3, 128, 132, 255, 256, 384, 512)] == [
        2048,
        2048,
        2048,
        2048,
        1024,
        682,
        512,
    ]
    # 16-pixel strips (the fixture) and a channel unit of 4: 8 input channels halve them
    monkeypatch.setattr(conv, "STRIP_PIXELS", 16)
    monkeypatch.setattr(conv, "STRIP_CHANNELS", 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 14, 10, 8)).astype(np.float32)  # 12 x 8 output: rows of 8 pixels
    w = rng.normal(size=(3, 3, 8, 5)).astype(np.float32)
    r = rng.normal(size=(1, 12, 8, 5)).astype(np.float32)

    def grads(variant, channels):
        def loss(x, w):
            return jnp.sum(
                conv.conv_variant(x[..., :channels], w[:, :, :channels], 1, 0, variant) * r
            )

        g = jax.grad(loss, (0, 1))
        text = jax.jit(g).lower(x, w).as_text()
        return jax.jit(g)(x, w), text.count("convolution(")

    (dx, dw), n_wide = grads("crop", 8)  # strips of 8 pixels: one row each, 12 strips
    _, n_narrow = grads("crop", 4)  # strips of 16 pixels: two rows each, 6 strips
    assert n_wide - n_narrow == 12 - 6
    for got, want in zip((dx, dw), grads("xla", 8)[0]):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["fast", "dot", "batched"])
def test_vmap_with_per_fit_weights_equals_a_loop(impl, monkeypatch):
    # Thresholds low enough that this small layer's rule is Winograd's, which `batched` runs
    # (batched products, no convolution); a stride-2 layer has no Winograd and runs as `dot`.
    monkeypatch.setattr(conv, "WINOGRAD_PIXELS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_WORK", 1)
    monkeypatch.setattr(conv, "WINOGRAD_CHANNELS", {"f32": 1, "bf16": 1})
    case = CASES[0]
    xs, ws = zip(*[_arrays(case, seed) for seed in range(3)])
    xs, ws = np.stack(xs), np.stack(ws)
    assert conv.Layer(xs.shape[1:], 3, ws.shape[-1], 1, 1, "f32").rule() == "winograd-4"

    def loss(x, w, stride=1):
        with conv.conv_impl(impl):
            return jnp.sum(jnp.sin(conv.conv2d(x, w, stride, 1)))

    vmapped = jax.jit(jax.vmap(jax.grad(loss, argnums=1)))
    if impl == "batched":
        assert "convolution" not in vmapped.lower(xs, ws).as_text()
        strided = jax.jit(jax.vmap(jax.grad(lambda x, w: loss(x, w, 2), argnums=1)))
        hlo = strided.lower(xs, ws).as_text()
        assert "convolution" not in hlo and "dot_general" in hlo  # patches x kernel
    g = vmapped(xs, ws)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(g[i]), np.asarray(jax.grad(loss, 1)(xs[i], ws[i])), rtol=1e-4, atol=1e-4
        )


def test_auto_is_xla_off_the_cpu_and_bad_names_are_refused(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert conv.current_impl() == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert conv.current_impl() == "fast"
    with pytest.raises(ValueError, match="one of"):
        with conv.conv_impl("fft"):
            pass


# bfloat16 keeps 8 significant bits: rounding one number moves it by at most U = 2^-8 of itself.
# A bf16 product rounds each operand (the cotangent too) and, for a gradient, its result once
# more; the f32 sums add ~1e-6. So every entry is within 4 U times the same product taken on
# absolute values (and a 1e-4 floor): a bound from the rounding alone, not from this code.
U = 2.0**-8


def _abs_bound(x, w, r, stride, padding):
    """|y|, |dx|, |dw| bounds: the float32 conv, input and weight gradients on |x|, |w|, |r|."""
    f = lambda x, w: jnp.sum(conv._xla(jnp.pad(x, _pads(padding)), w, stride) * np.abs(r))
    ax, aw = np.abs(x), np.abs(w)
    y = numpy_conv(ax, aw, stride, padding)
    return y, jax.grad(f, 0)(ax, aw), jax.grad(f, 1)(ax, aw)


def _pads(p):
    return ((0, 0), (p, p), (p, p), (0, 0))


@pytest.mark.parametrize("impl", ["xla", "fast", "dot"])
@pytest.mark.parametrize("case", CASES)
def test_bf16_is_float32_within_its_rounding_bound(impl, case):
    x, w = _arrays(case)
    stride, padding = case[5], case[6]
    r = np.random.default_rng(1).normal(size=numpy_conv(x, w, stride, padding).shape)

    def run(name, precision):
        def loss(x, w):
            with conv.conv_impl(name), conv.conv_precision(precision):
                y = conv.conv2d(x, w, stride, padding)
            return jnp.sum(y * r), y

        (_, y), g = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w)
        return y, *g

    got, want = run(impl, "bf16"), run("xla", "f32")
    assert all(a.dtype == jnp.float32 for a in got)  # outputs and gradients stay float32
    for a, b, bound, name in zip(
        got, want, _abs_bound(x, w, r, stride, padding), "y dx dw".split()
    ):
        err = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        excess = err - (4 * U * np.asarray(bound) + 1e-4)
        assert excess.max() <= 0, f"{name}: error over the bound by {excess.max()}"
        assert err.max() > 0, f"{name}: bf16 gave exactly the f32 result (was it used?)"


# Winograd's F(2x2, 3x3) as Lavin and Gray print it, for the bound below: input transform B^T,
# kernel transform G, output transform A^T.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _abs_winograd(x, w):
    """F(2x2, 3x3) on |x|, |w| with |B^T|, |G|, |A^T|, by gathering every 4x4 tile: each output
    as the sum of the absolute values of the terms Winograd's algorithm adds up."""
    n, h, wd, _ = x.shape
    ti, tj = -(-(h - 2) // 2), -(-(wd - 2) // 2)
    x = jnp.pad(jnp.abs(x), ((0, 0), (0, 2 * ti + 2 - h), (0, 2 * tj + 2 - wd), (0, 0)))
    rows = (2 * np.arange(ti)[:, None] + np.arange(4))[:, :, None, None]
    cols = (2 * np.arange(tj)[:, None] + np.arange(4))[None, None]
    tiles = x[:, rows, cols]  # (n, ti, 4, tj, 4, c)
    bt, g, at = np.abs(_BT), np.abs(_G), np.abs(_AT)
    v = jnp.einsum("ka,nIaJbc,lb->nIJklc", bt, tiles, bt)
    u = jnp.einsum("ka,abco,lb->klco", g, jnp.abs(w), g)
    y = jnp.einsum("pk,nIJklc,klco,ql->nIpJqo", at, v, u, at)
    return y.reshape(n, 2 * ti, 2 * tj, -1)[:, : h - 2, : wd - 2]


@pytest.mark.parametrize("shape", [(2, 13, 11, 5, 6), (1, 10, 12, 3, 4), (1, 3, 4, 2, 2)])
def test_winograd_in_bf16_is_float32_within_its_rounding_bound(shape):
    # Each of Winograd's terms is a product of a rounded input or cotangent, a rounded transformed
    # tile and a rounded transformed kernel (and a gradient is rounded once more), so each moves
    # by at most ~4 U of its size: the error is within 4 U times the sum of the terms' absolute
    # values, which _abs_winograd and its gradients (against |r|) add up.
    n, h, wd, c, o = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, h, wd, c)).astype(np.float32)
    w = rng.normal(size=(3, 3, c, o)).astype(np.float32)
    r = rng.normal(size=(n, h - 2, wd - 2, o)).astype(np.float32)

    def run(variant, precision):
        def loss(x, w):
            y = conv.conv_variant(x, w, 1, 0, variant, precision)
            return jnp.sum(y * r), y

        (_, y), g = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w)
        return y, *g

    bound = lambda x, w: jnp.sum(_abs_winograd(x, w) * np.abs(r))
    ax, aw = np.abs(x), np.abs(w)
    bounds = (_abs_winograd(ax, aw), *jax.grad(bound, (0, 1))(ax, aw))
    got, want, xla16 = run("winograd-2", "bf16"), run("xla", "f32"), run("xla", "bf16")
    for t in winograd.TILES:  # float32, either tile: XLA's function, gradients too
        for a, b in zip(run(f"winograd-{t}", "f32"), want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    rms = lambda a, b: np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b)) ** 2))
    for a, b, c, bnd, name in zip(got, want, xla16, bounds, "y dx dw".split()):
        assert a.dtype == jnp.float32
        err = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        excess = err - (4 * U * np.asarray(bnd) + 1e-4)
        assert excess.max() <= 0, f"{name}: error over the bound by {excess.max()}"
        assert err.max() > 1e-4, f"{name}: bf16 gave the f32 result (was it used?)"
        # and near XLA's bf16 convolution, whose operands round once fewer (Winograd's RMS
        # error came out 1.4-2.1x XLA's on these arrays)
        assert rms(a, b) <= 3 * rms(c, b), f"{name}: {rms(a, b)} against XLA's {rms(c, b)}"


def test_winograd_runs_as_matrix_products_and_is_the_rule_for_large_maps():
    x = jax.ShapeDtypeStruct((1, 10, 10, 4), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 4, 4), jnp.float32)
    for t in winograd.TILES:
        loss = lambda x, w: jnp.sum(conv.conv_variant(x, w, 1, 1, f"winograd-{t}") ** 2)
        hlo = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(x, w).as_text()
        assert "convolution" not in hlo
        assert hlo.count("dot_general") >= 3 * (t + 2) ** 2  # (t + 2)^2 products per pass
    with pytest.raises(ValueError, match="tile"):
        winograd.conv3x3(jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 1)), tile=3)
    px, work = conv.WINOGRAD_PIXELS, conv.WINOGRAD_WORK
    narrow, ch = conv.WINOGRAD_CHANNELS["f32"], conv.WINOGRAD_CHANNELS["bf16"]
    side = int(np.ceil(np.sqrt(px)))
    layer = lambda h, c, o, k=3, s=1, p="f32": conv.Layer((1, h, h, c), k, o, s, 0, p)
    c = -(-work // (side * side * narrow))  # with `narrow` outputs, the work threshold
    assert c >= narrow
    assert layer(side + 2, c, narrow).rule() == "winograd-4"
    assert layer(side + 2, c - 1, narrow).rule() not in ("winograd-4", "winograd-2")  # work
    assert layer(side + 1, 4 * c, narrow).rule() != "winograd-4"  # (side - 1)^2 < px outputs
    assert layer(8 * side + 2, 4 * c, narrow - 1).rule() != "winograd-4"  # too few channels
    assert layer(side + 2, ch, ch, p="bf16").rule() == "winograd-2"
    assert layer(side + 2, ch - 1, ch, p="bf16").rule() != "winograd-2"  # too few channels
    assert layer(side + 2, ch, ch - 1, p="bf16").rule() != "winograd-2"
    assert layer(side + 1, ch, ch, p="bf16").rule() != "winograd-2"
    # F(4x4, 3x3) is offered in float32 only: bf16's rounding of its 6x6 transforms is too coarse
    assert {"winograd-2", "winograd-4"} <= set(layer(side + 2, ch, ch).variants())
    assert "winograd-4" not in layer(side + 2, ch, ch, p="bf16").variants()
    assert not any(v.startswith("winograd") for v in layer(side + 2, ch, ch, s=2).variants())
    assert not any(v.startswith("winograd") for v in layer(side + 2, ch, ch, k=5).variants())


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="one of"):
        with conv.conv_precision("fp8"):
            pass
    with pytest.raises(ValueError, match="one of"):
        conv.traced_with(lambda: 0, "fp16")


def _library_hlo(library: str) -> str:
    """A small function's optimized HLO (a convolution, a matrix product, a reduction and an
    elementwise product), compiled in a fresh process with ``conv.compiler_options(library)``,
    or ("") with XLA's default list less its convolutions, by XLA's own flag (and the step's
    ``conv.codegen_options``, as every library)."""
    code = f"""
import jax, jax.numpy as jnp
from dipjax.ops import conv
x = jax.ShapeDtypeStruct((1, 18, 18, 32), jnp.float32)
w = jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32)
def f(x, w):
    y = conv._xla(x, w, 1)
    return y, jnp.dot(x[0, 0], w[0, 0]), x.sum(axis=(1, 2)), x * x
opts = {library!r}
options = conv.compiler_options(opts) if opts else conv.codegen_options()
print(jax.jit(f).lower(x, w).compile(options).as_text())
"""
    env = dict(os.environ)
    if not library:
        env["XLA_FLAGS"] = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.skipif(len(conv.libraries()) < 2, reason="this jaxlib offers one library")
def test_eigen_options_are_xla_default_without_its_convolutions():
    # XLA's own way to take convolutions off YNNPACK, against the list conv spells out
    ours, xlas, default = _library_hlo("eigen"), _library_hlo(""), _library_hlo("ynnpack")
    assert " convolution(" in ours and ours == xlas
    assert default != ours  # XLA's default hands the convolution to YNNPACK


@pytest.mark.skipif(len(conv.libraries()) < 2, reason="this jaxlib offers one library")
def test_both_libraries_compute_the_same_convolution_and_gradients():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 20, 20, 32)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 32, 24)) * 0.1, jnp.float32)
    ref = numpy_conv(np.asarray(x, np.float64), np.asarray(w, np.float64), 1, 0)

    def loss(x, w):
        y = conv.conv_variant(x, w, 1, 0, "xla")
        return jnp.sum(y * y), y

    f = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    out = {}
    for lib in conv.libraries():
        (gx, gw), y = f.lower(x, w).compile(conv.compiler_options(lib))(x, w)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        out[lib] = (gx, gw)
    for a, b in zip(out["ynnpack"], out["eigen"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_an_unknown_library_is_refused():
    with pytest.raises(ValueError, match="library"):
        conv.compiler_options("mkl")


@pytest.mark.skipif(not conv.codegen_options(), reason="no loop emitter option on this backend")
def test_the_steps_codegen_options_compute_the_same_step():
    # compiled_chunk compiles a fit's step with codegen_options (on a CPU, XLA's older loop
    # emitter): same loss, output and gradient as XLA's default code, to float rounding.
    # Plain gradient descent, so that the new weights show the gradient (Adam's first step is
    # about lr x its sign, which rounding flips where it is near zero).
    import optax
    from conftest import smooth_image, tiny_preset

    from dipjax import api, build
    from dipjax.step import init_state, make_runner, make_step

    p = tiny_preset("denoise", sigma=25)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True, seed=0)
    su = build.setup([problem], p, [(0, 0)])
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
    state = init_state(su.net, tx, jax.random.key(3), su.batch["z"])
    step = make_step(su.net, tx, problem.measure, reg_noise_std=p.reg_noise_std)
    lowered = make_runner(step, 1).lower(state, su.batch)
    default, loop = (lowered.compile(options) for options in ({}, conv.codegen_options()))
    assert default.as_text() != loop.as_text()  # the option reached XLA: other fusions
    (new_a, m_a), (new_b, m_b) = default(state, su.batch), loop(state, su.batch)
    np.testing.assert_allclose(m_a["loss"], m_b["loss"], rtol=1e-5)
    np.testing.assert_allclose(new_a.out_avg, new_b.out_avg, atol=1e-5)
    grad_a, grad_b = state.params - new_a.params, state.params - new_b.params
    assert float(jnp.max(jnp.abs(grad_a))) > 1e-3  # the step moved the weights
    np.testing.assert_allclose(grad_b, grad_a, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the option is probed on a CPU only")
def test_codegen_options_are_empty_where_xla_refuses_them(monkeypatch):
    monkeypatch.setattr(conv, "_LOOP_EMITTER", {"xla_cpu_no_such_option": True})
    conv._loop_emitter_offered.cache_clear()
    try:
        assert conv.codegen_options() == {}
        assert conv.compiler_options("ynnpack") == {}
    finally:
        monkeypatch.undo()
        conv._loop_emitter_offered.cache_clear()


def test_a_fits_step_is_compiled_with_the_codegen_options(monkeypatch):
    # compiled_chunk, one fit (conv_choice.traced, here without a file of choices) and vmapped
    from conftest import smooth_image, tiny_preset

    from dipjax import api, build
    from dipjax.step import compiled_chunk

    expected = conv.codegen_options()  # probed before the spy is in place
    asked = []
    compile_ = jax.stages.Lowered.compile

    def spy(self, compiler_options=None, **kw):
        asked.append(compiler_options)
        return compile_(self, compiler_options, **kw)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    p = tiny_preset("denoise", sigma=25)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True, seed=0)
    one = build.setup([problem], p, [(0, 0)])
    two = build.setup([problem], p, [(0, 0), (0, 1)], stack=True, devices=jax.devices()[:1])
    asked.clear()  # the setups' own compiles (initialisation, input) keep their options
    compiled_chunk(one.step, 1, one.state, one.batch)
    compiled_chunk(two.step, 1, two.state, two.batch, batch_axes=two.axes)
    assert asked == [expected] * 2
