"""A restored checkpoint is the saved state, and it lowers to the same program as a fresh state
(so that a resumed run finds its chunk in the compile cache)."""

import jax
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, build, checkpoint
from dipjax.checkpoint import Checkpointer
from dipjax.io import InputError
from dipjax.step import make_runner, unflatten_params


def test_restored_state_is_the_saved_one_and_lowers_alike(tmp_path):
    p = tiny_preset("denoise", sigma=25, sgld=0.5, sgld_burn_in=1, iters=4)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True)
    su = build.setup([problem], p, [(0, 0)])
    runner = make_runner(su.step, 2)
    state, _ = runner(su.state, su.batch)
    saver = Checkpointer(tmp_path, "run-1")
    saver.save(su.fits, False, state, [[{"iter": 1}, {"iter": 2}]])
    saver.close()
    fresh = build.setup([problem], p, [(0, 0)]).state
    restored = Checkpointer(tmp_path, "run-1").restore(fresh)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.post["n"]) == 1 and int(restored.step) == 2
    assert float(restored.post["mean"].max()) > 0  # the moments are checked on real values
    lower = lambda s: make_runner(su.step, 2).lower(s, su.batch).as_text()
    assert lower(restored) == lower(fresh)


def test_a_checkpoint_of_another_format_or_shape_is_refused_in_one_line(tmp_path, monkeypatch):
    p = tiny_preset("denoise", iters=4)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True)
    su = build.setup([problem], p, [(0, 0)])
    # a state whose weights are a tree of arrays, as dipjax before the flat weights saved them
    old = su.state.replace(params=unflatten_params(su.net, su.batch["z"], su.state.params))
    for fmt, folder in ((1, tmp_path / "marked-old"), (checkpoint.STATE_FORMAT, tmp_path / "odd")):
        monkeypatch.setattr(checkpoint, "STATE_FORMAT", fmt)
        saver = Checkpointer(folder, "run-1")
        saver.save(su.fits, False, old, [[{"iter": 1}]])
        saver.close()
    monkeypatch.undo()
    # found from the record, before any state is built
    with pytest.raises(InputError, match="written by another version of dipjax") as e:
        Checkpointer(tmp_path / "marked-old", "run-1").current()
    want = f"state format 1, this version's {checkpoint.STATE_FORMAT}"
    assert "\n" not in str(e.value) and want in str(e.value)
    # marked as this format but shaped otherwise: orbax's refusal, in one line
    assert Checkpointer(tmp_path / "odd", "run-1").current()["iters"] == 1
    with pytest.raises(InputError, match="not shaped like this run's") as e:
        Checkpointer(tmp_path / "odd", "run-1").restore(su.state)
    assert "\n" not in str(e.value) and str(tmp_path / "odd") in str(e.value)


@pytest.mark.parametrize("damage", ["meta", "arrays"])
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_it(tmp_path, damage):
    p = tiny_preset("denoise", iters=4)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True)
    su = build.setup([problem], p, [(0, 0)])
    saver = Checkpointer(tmp_path, "run-1")
    saver.save(su.fits, False, su.state, [[{"iter": 1}]])
    saver.close()
    step = next((tmp_path / "checkpoint" / "state").iterdir())
    files = [f for f in step.rglob("*") if f.is_file()]
    if damage == "meta":
        files = [f for f in files if f.parent.name == "meta"]
    else:
        files = [f for f in files if f.parent.name != "meta" and "METADATA" not in f.name.upper()]
    assert files
    for f in files:
        f.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(InputError) as e:
        again = Checkpointer(tmp_path, "run-1")
        assert again.current() is not None
        again.restore(su.state)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "checkpoint"))
    assert "cannot be read, it may be damaged" in message, message


def test_a_checkpoint_folder_emptied_has_nothing_to_resume(tmp_path):
    import shutil

    p = tiny_preset("denoise", iters=4)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True)
    su = build.setup([problem], p, [(0, 0)])
    saver = Checkpointer(tmp_path, "run-1")
    assert not saver.exists()
    saver.save(su.fits, False, su.state, [[{"iter": 1}]])
    saver.close()
    assert Checkpointer(tmp_path, "run-1").exists()
    for step in (tmp_path / "checkpoint" / "state").iterdir():
        shutil.rmtree(step)  # the state's folders gone, the checkpoint's own still there
    assert (tmp_path / "checkpoint").is_dir() and not Checkpointer(tmp_path, "run-1").exists()
    Checkpointer(tmp_path, "run-1").finish(0, 0, {"output": np.zeros((2, 2, 3))}, {"history": []})
    assert Checkpointer(tmp_path, "run-1").exists()  # a finished fit's record


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_a_damaged_finished_fit_record_is_refused_in_one_line(tmp_path, suffix):
    saver = Checkpointer(tmp_path, "run-1")
    saver.finish(0, 0, {"output": np.zeros((2, 2, 3))}, {"history": []})
    next((tmp_path / "checkpoint" / "done").glob(f"*{suffix}")).write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="cannot be read, it may be damaged") as e:
        Checkpointer(tmp_path, "run-1").finished()
    assert "\n" not in str(e.value)
