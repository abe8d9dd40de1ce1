"""Property test: output shapes of the generators over input sizes and channel counts, against
the reference's rules (FACTS.md section 5)."""

import jax
import jax.numpy as jnp
from hypothesis import given, settings
from hypothesis import strategies as st

from dipjax import ResNet, UNet, skip


def out_shape(net, shape):
    f = lambda x: net.init_with_output(jax.random.key(0), x)[0]
    return jax.eval_shape(f, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


@settings(max_examples=12, deadline=None)
@given(h=st.integers(9, 70), w=st.integers(9, 70), cin=st.integers(1, 5), cout=st.integers(1, 4))
def test_all_skip_net_keeps_any_size(h, w, cin, cout):
    # With a skip connection at every scale the centre crops give back H x W exactly.
    net = skip(
        cin, cout, [4, 4, 4], [4, 4, 4], [2, 2, 2], pad="reflection", upsample_mode="bilinear"
    )
    assert out_shape(net, (1, h, w, cin)) == (1, h, w, cout)


@settings(max_examples=12, deadline=None)
@given(h=st.integers(16, 70), w=st.integers(16, 70))
def test_unet_floors_to_multiples_of_16(h, w):
    net = UNet(2, 3, feature_scale=16, norm_layer="none")
    assert out_shape(net, (1, h, w, 2)) == (1, h // 16 * 16, w // 16 * 16, 3)


@settings(max_examples=8, deadline=None)
@given(h=st.integers(3, 40), w=st.integers(3, 40))
def test_resnet_keeps_size(h, w):
    assert out_shape(ResNet(1, 3, 2, 4), (1, h, w, 1)) == (1, h, w, 3)
