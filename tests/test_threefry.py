"""The step's unrolled Threefry against the hash's published test vectors and against
``jax.random.normal``, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipjax import threefry


@pytest.mark.parametrize(
    "key, counter, expected",
    [  # Random123's known answers for Threefry-2x32, 20 rounds
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_hash_gives_the_published_answers(key, counter, expected):
    u = lambda v: jnp.asarray(v, jnp.uint32)
    got = threefry.hash2x32(u(key[0]), u(key[1]), u([counter[0]]), u([counter[1]]))
    assert [int(x[0]) for x in got] == list(expected)


@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (1, 64, 64, 32), (1001,)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_normal_is_jax_random_normal_bit_for_bit(shape, dtype):
    for step in (0, 1, 2999):
        key = jax.random.fold_in(jax.random.key(7), step)
        got = jax.jit(threefry.normal, static_argnums=(1, 2))(key, shape, dtype)
        want = jax.random.normal(key, shape, dtype)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_normal_under_vmap_draws_each_keys_own_numbers():
    keys = jax.random.split(jax.random.key(3), 4)
    got = jax.jit(jax.vmap(lambda k: threefry.normal(k, (1, 9, 9, 4))))(keys)
    want = jax.vmap(lambda k: jax.random.normal(k, (1, 9, 9, 4)))(keys)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert not np.array_equal(np.asarray(got[0]), np.asarray(got[1]))


def test_other_keys_go_to_jax_itself():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(
        np.asarray(threefry.normal(key, (3, 4))), np.asarray(jax.random.normal(key, (3, 4)))
    )


def test_jax_drawing_bits_the_old_way_is_followed():
    before = getattr(jax.config, "jax_threefry_partitionable", None)
    if before is None:
        pytest.skip("this JAX always draws threefry bits partitionably")
    key = jax.random.key(11)
    jax.config.update("jax_threefry_partitionable", False)
    try:
        got, want = threefry.normal(key, (5, 6)), jax.random.normal(key, (5, 6))
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
