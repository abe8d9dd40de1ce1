"""The compiled pieces around the step: the render compiled without LLVM's optimiser computes the
net's forward pass as the default compilation does, up to float rounding; the initialisation and
the input, compiled at LLVM's lighter level, give the default compilation's bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, build, inputs
from dipjax.ops import conv
from dipjax.presets import get_preset
from dipjax.step import flatten_params, init_state, unflatten_params


def test_the_render_matches_the_default_compiled_forward_pass():
    p = tiny_preset("denoise", iters=2)
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=1)
    su = build.setup([prob], p, [(0, 1)])
    got = np.asarray(su.render(su.state.params))
    want = np.asarray(
        jax.jit(lambda q, z: su.net.apply({"params": unflatten_params(su.net, z, q)}, z))(
            su.state.params, su.batch["z"]
        )
    )
    assert got.shape == want.shape == (1, 32, 32, 3)
    assert np.abs(want - 0.5).max() > 1e-3  # a real output, not a constant
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_the_fit_state_holds_flax_initial_weights_as_one_vector():
    p = tiny_preset("denoise")
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=1)
    net, z, _ = build.problem_arrays(prob, p, 3)
    # init_state draws the weights from the first half of the fit key's split
    tree = net.init(jax.random.split(jax.random.key(3))[0], z)["params"]
    leaves = jax.tree_util.tree_leaves(tree)
    state = build._jitted_init(net, build.make_optimizer(p.lr), 0, False)(jax.random.key(3), z)
    assert state.params.shape == (sum(x.size for x in leaves),) == state.saved_params.shape
    want = np.concatenate([np.ravel(x) for x in leaves])
    np.testing.assert_allclose(np.asarray(state.params), want, rtol=1e-6, atol=1e-7)
    back = unflatten_params(net, z, state.params)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    for a, b in zip(jax.tree_util.tree_leaves(back), leaves):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert np.array_equal(np.asarray(flatten_params(back)), np.asarray(state.params))
    with pytest.raises(ValueError, match="parameters for a net of"):
        unflatten_params(net, z, state.params[:-1])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lighter level is the CPU's")
@pytest.mark.parametrize("preset", ["tiny", "superres-fast"])
def test_the_initialisation_and_input_compiled_lighter_are_the_default_bits(preset):
    # The default: the input drawn op by op, the initialisation jitted without options.
    p = tiny_preset("denoise") if preset == "tiny" else get_preset(preset).replace(demo_side=64)
    prob = api.prepare(p.task, p, smooth_image(32, 32) if preset == "tiny" else None)
    net, z, _ = build.problem_arrays(prob, p, 3)
    want_z = inputs.make_input(
        jax.random.fold_in(jax.random.key(3), 1),
        p.input_kind,
        p.input_depth,
        z.shape[1:3],
        var=p.input_var,
    )
    assert z.shape == want_z.shape and np.array_equal(np.asarray(z), np.asarray(want_z))
    tx = build.make_optimizer(p.lr, p.weight_decay)
    got = build._jitted_init(net, tx, 0, False)(jax.random.key(3), z)
    want = jax.jit(lambda k, x: init_state(net, tx, k, x, 0, False))(jax.random.key(3), z)
    data = lambda a: (
        jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a
    )
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    assert len(jax.tree_util.tree_leaves(got)) > 8
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert np.array_equal(np.asarray(data(a)), np.asarray(data(b)))


def test_bf16_net_is_the_float32_net_within_its_bounds():
    """bf16 convolutions in the tiny net: every product rounds its operands by 2^-8, which the
    BatchNorms (whose backward pass subtracts means) amplify layer by layer. Stated bounds: the
    output (in [0, 1]) within 2e-2 of float32's, the loss within 1 %, the gradient of all
    parameters within 25 % in norm (measured: 0.010, 0.03 %, 11 %), and nothing left float32
    bit for bit. A step keeps parameters and Adam's moments float32."""
    prob = api.prepare("denoise", tiny_preset("denoise"), smooth_image(), degrade=True, seed=1)
    p = tiny_preset("denoise", precision="bf16")
    su = build.setup([prob], p, [(0, 1)])

    def loss(params, precision):
        with conv.conv_precision(precision):
            out = su.net.apply({"params": params}, su.batch["z"])
        return jnp.mean((out - su.batch["target"]) ** 2), out

    got = {}
    for precision in ("f32", "bf16"):
        f = jax.value_and_grad(lambda q: loss(q, precision), has_aux=True)
        tree = unflatten_params(su.net, su.batch["z"], su.state.params)
        (value, out), grads = jax.jit(f)(tree)
        flat = np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grads)])
        assert out.dtype == flat.dtype == np.float32
        got[precision] = float(value), np.asarray(out), flat
    (l32, y32, g32), (l16, y16, g16) = got["f32"], got["bf16"]
    assert 0 < np.abs(y16 - y32).max() < 2e-2
    assert abs(l16 - l32) < 0.01 * l32
    assert 0 < np.linalg.norm(g16 - g32) < 0.25 * np.linalg.norm(g32)
    np.testing.assert_allclose(np.asarray(su.render(su.state.params)), y16, atol=1e-5)

    state, _ = jax.jit(su.step)(su.state, su.batch)
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
    assert all(x.dtype in (np.float32, np.int32) for x in leaves)


def test_the_fits_of_a_run_share_one_traced_initialisation(monkeypatch):
    # A sequential ensemble sets up each fit on its own: the jitted initialisation must be the
    # same function for all (its trace cost ~0.8 s per seed before).
    traced, real = [], build.init_state
    monkeypatch.setattr(build, "init_state", lambda *a, **k: traced.append(1) or real(*a, **k))
    build._jitted_init.cache_clear()
    p = tiny_preset("denoise", lr=0.0123)
    prob = api.prepare("denoise", p, smooth_image(32, 32), degrade=True)
    a = build.setup([prob], p, [(0, 1)])
    b = build.setup([prob], p, [(0, 2)])
    assert len(traced) == 1 and a.tx is b.tx
    assert not np.array_equal(np.asarray(a.state.params), np.asarray(b.state.params))


def test_one_optimizer_per_learning_rate_whatever_its_type():
    from dipjax.step import make_optimizer

    assert make_optimizer(1, 0) is make_optimizer(1.0, 0.0) is make_optimizer(np.float64(1.0))
    rate = make_optimizer(1).init(jnp.zeros(3)).hyperparams["learning_rate"]
    assert rate.dtype == jnp.float32  # an int rate is a float one (the rollback scales it)
