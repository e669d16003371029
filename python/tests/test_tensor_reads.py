"""Tests of ``Snapshot.tensors`` (C ABI 1.2, ``gs_snapshot_tensor_count``/``_view``).

The oracle is numpy: the arrays the test wrote, converted to the stored type the way the format
says (float16 stays float16; bfloat16 and float32 are float32 exactly; float64 rounds once to
float32), and float32 differences for a delta. The Spec's independent reference reader
(Spec/reference/gradsketch_ref.py, h5py) checks the same store as a second opinion.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import gradsketch as gs


def _state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "blocks.0.attn.q.weight": rng.standard_normal((6, 4)).astype(np.float32),
        "blocks.0.attn.q.bias": rng.standard_normal(6).astype(np.float16),
        "head.weight": rng.standard_normal((3, 2, 5)).astype(np.float64),
        "scale": np.array(2.5, dtype=np.float32),  # a 0-d tensor
    }


def test_tensors_read_back_a_state_dict_in_stored_dtype_and_shape(tmp_store, reference):
    import torch

    state = _state(1)
    tmp_store.put_state_dict("base", state)
    bf16 = torch.randn(4, 3).to(torch.bfloat16)
    tmp_store.put_state_dict("bf", {"x": bf16, "steps": torch.tensor(3)})  # the int entry is skipped

    with tmp_store.snapshot() as snap:
        got = snap.tensors("base")
        bf = snap.tensors("bf")
    # Sorted by name bytes, as the header says.
    assert list(got) == sorted(state, key=lambda name: name.encode())
    for name, array in state.items():
        stored = array if array.dtype == np.float16 else array.astype(np.float32)
        assert got[name].dtype == stored.dtype, name
        assert got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], stored, err_msg=name)
        assert not got[name].flags.writeable
    # float64 values are rounded once: the largest change is within float32's half ulp.
    head = state["head.weight"]
    assert np.max(np.abs(got["head.weight"] - head) / np.abs(head)) <= 2.0 ** -24
    assert list(bf) == ["x"]
    np.testing.assert_array_equal(bf["x"], bf16.float().numpy())  # bfloat16 widened exactly

    # The reference reader (h5py) sees the same values.
    from_reference = reference.read_tensors(tmp_store.path, "base")
    assert sorted(from_reference) == sorted(got)
    for name, array in from_reference.items():
        np.testing.assert_array_equal(got[name], array)


def test_tensors_of_a_delta_are_float32_differences(tmp_store):
    base, tuned = _state(2), _state(3)
    tmp_store.put_tensors("base", base)
    tmp_store.put_tensors("tuned", tuned)
    tmp_store.delta("d", "base", "tuned")
    with tmp_store.snapshot() as snap:
        delta = snap.tensors("d")
    for name in base:
        want = tuned[name].astype(np.float32) - base[name].astype(np.float32)
        assert delta[name].dtype == np.float32
        np.testing.assert_array_equal(delta[name], want, err_msg=name)


def test_tensors_load_into_a_torch_module(tmp_store):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    tmp_store.put_state_dict("model", model.state_dict())
    clone = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    with tmp_store.snapshot() as snap:
        arrays = snap.tensors("model")
    clone.load_state_dict({name: torch.from_numpy(array.copy()) for name, array in arrays.items()})
    x = torch.randn(4, 5)
    assert torch.equal(model(x), clone(x))


def test_tensor_arrays_outlive_the_closed_snapshot(tmp_store):
    state = _state(4)
    tmp_store.put_tensors("base", state)
    snap = tmp_store.snapshot()
    arrays = snap.tensors("base")
    snap.close()
    del snap
    gc.collect()
    np.testing.assert_array_equal(arrays["blocks.0.attn.q.weight"], state["blocks.0.attn.q.weight"])


def test_tensors_refuses_unknown_sets_and_closed_snapshots(tmp_store):
    tmp_store.put_tensors("base", _state(5))
    snap = tmp_store.snapshot()
    with pytest.raises(gs.NotFoundError, match="nosuch"):
        snap.tensors("nosuch")
    snap.close()
    with pytest.raises(gs.InvalidStateError, match="closed"):
        snap.tensors("base")
