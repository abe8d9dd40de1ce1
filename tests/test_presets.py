"""Every preset builds its generator and step at the preset's own sizes (shapes only, no
compute), and preset fields are validated where they are set."""

import math

import jax
import numpy as np
import pytest
from conftest import tiny_preset

from dipjax import build, tasks
from dipjax.presets import PRESETS, ParameterError, get_preset
from dipjax.step import init_state, make_optimizer

# An output size each preset's generator accepts (the paper's images are 512 or so).
SIZE = {"superres-x8": 256, "inpaint-library": 256}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_under_eval_shape(name):
    p = PRESETS[name]
    side = SIZE.get(name, 128)
    hw = (side, side)
    if p.task == "superres":
        lr = np.zeros((side // p.scale, side // p.scale, 3), np.float32)
        problem = tasks.Problem("superres", tasks.Measure("downsample", p.scale), lr, hw)
    else:
        img = np.zeros(hw + (3,), np.float32)
        problem = tasks.Problem(
            p.task, tasks.Measure(), img, hw, net_image=img if p.input_kind == "image" else None
        )
    net, z, batch = build.problem_arrays(problem, p, 0)
    tx = make_optimizer(p.lr)
    state = jax.eval_shape(
        lambda k, x: init_state(net, tx, k, x, build.es_window(p)), jax.random.key(0), z
    )
    step = build.preset_step(net, tx, problem, p)
    new, metrics = jax.eval_shape(step, state, batch)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    assert new.out_avg.shape == (1,) + hw + (3,)
    assert metrics["loss"].shape == ()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("early_stop", "typo", "must be off, mark, halt"),
        ("init_style", "typo", "must be modern or legacy"),
        ("lr", math.inf, "must be a finite number"),
        ("lr", -1.0, "must be a finite number in (0, 10]"),
        ("iters", 0, "must be an integer in 1..1000000"),
        ("iters", 10**20, "must be an integer in 1..1000000"),
        ("keep", 0.0, "must be in (0, 1]"),
        ("blur", "box:3", "blur must be 'gauss:SIGMA'"),
        ("es_window", 1, "must be an integer >= 2"),
        ("precision", "fp16", "must be f32 or bf16"),
        ("crop", -1, "must be an integer >= 0"),
        ("pad", -5, "must be an integer >= 0"),
        ("backtrack_drop_db", math.nan, "must be a finite number > 0"),
        ("sr_kernel", "bicubic", "must be lanczos2"),
    ],
)
def test_bad_fields_are_refused_by_name(field, value, message):
    with pytest.raises(ParameterError, match=f"^{field}=") as e:
        tiny_preset("denoise").replace(**{field: value})
    assert e.value.name == field and message in str(e.value)


def test_unknown_preset_and_wrong_task():
    with pytest.raises(ParameterError, match="unknown"):
        get_preset("nope")
    with pytest.raises(ParameterError, match="is for task superres, not denoise"):
        get_preset("superres-x4", "denoise")


def test_a_field_whose_default_is_none_can_be_set_back():
    p = get_preset("denoise").replace(sgld=0.5, sgld_burn_in=100)
    assert p.replace(sgld_burn_in=None).sgld_burn_in is None
    assert p.replace(sgld=0, sgld_burn_in=None).sgld == 0  # SGLD turned off again
    assert p.replace(iters=None).iters == p.iters  # other fields: None leaves them


def test_a_problem_is_not_prepared_with_another_tasks_preset():
    import numpy as np

    with pytest.raises(ParameterError, match="is for task superres, not denoise"):
        tasks.prepare("denoise", get_preset("superres-fast"), np.zeros((32, 32, 3), np.float32))


@pytest.mark.parametrize("crop", [0, 7, 32])
def test_super_resolution_crops_to_a_multiple_of_the_scale(crop):
    import numpy as np

    p = tiny_preset("superres", scale=4, crop=crop)
    prob = tasks.prepare("superres", p, np.full((70, 66, 3), 0.5, np.float32), degrade=True)
    h, w = prob.out_hw
    assert prob.gt.shape[:2] == (h, w) and prob.target.shape[:2] == (h // 4, w // 4)
    assert h % 4 == 0 and w % 4 == 0 and (crop == 0 or h % crop == 0)


def test_run_takes_a_preset_by_name_and_nets_refuse_an_unknown_init_style():
    import jax.numpy as jnp

    from dipjax import api
    from dipjax.nets import skip

    with pytest.raises(ParameterError, match="nope"):
        api.run([], "nope")
    net = skip(4, 3, [8, 8], [8, 8], [2, 2], init_style="bogus")
    with pytest.raises(ValueError, match="init_style must be one of"):
        net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 4)))
