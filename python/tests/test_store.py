"""Tests of the gradsketch package core (Store, Snapshot, AppendSession, results).

Every expected value comes from an independent oracle: numpy computing in float64 from the
rows the test wrote, the Spec's reference reader (Spec/reference/gradsketch_ref.py, which reads
the HDF5 files with h5py and knows nothing of the engine), or the `gradsketch` CLI.
"""

from __future__ import annotations

import gc
import json
import subprocess
import weakref
from pathlib import Path

import numpy as np
import pytest

import gradsketch as gs
from gradsketch import _native

# float32 scores of the engine vs float64 numpy: relative error of a float32 dot product of
# width k is below ~k * 2^-24 of |x||y|; 1e-4 of the norm product covers k <= 1000.
SCORE_TOLERANCE = 1e-4


def _random_rows(n: int, k: int, seed: int, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)).astype(dtype)


def _write(store: gs.Store, set_name: str, rows: np.ndarray, prefix: str = "r", **kwargs) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(len(rows))]
    with store.append_session(set_name, **kwargs) as session:
        session.append(rows, ids=ids)
    return ids


def _numpy_top_k(rows: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Oracle: exact top-k in float64, largest first (ties by lower row, as a stable sort)."""
    matrix = rows.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    scores = q @ matrix.T
    if metric == "cosine":
        scores = scores / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(matrix, axis=1))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


# ---- writing and reading back --------------------------------------------------------------


def test_rows_ids_labels_metadata_round_trip_through_the_reference_reader(tmp_store, reference):
    first, second = _random_rows(40, 16, 1), _random_rows(25, 16, 2)
    ids = [f"ex-{i}-é" for i in range(65)]  # non-ASCII ids cross the packed text intact
    labels = [f"label {i % 3}" for i in range(65)]
    metadata = [{"step": i, "text": f"doc {i}"} for i in range(65)]
    with tmp_store.append_session("train", attributes={"gradient_kind": "per-example-loss-gradient"}) as session:
        session.append(first, ids=ids[:40], labels=labels[:40], metadata=metadata[:40])
        session.append(second, ids=ids[40:], labels=labels[40:], metadata=metadata[40:])
    assert session.state == "committed" and session.rows_committed == 65

    rows, ref_ids, ref_labels, ref_metadata, _ = reference.read_set(tmp_store.path, "train")
    expected = np.concatenate([first, second])
    np.testing.assert_array_equal(rows, expected)
    assert ref_ids == ids and ref_labels == labels
    assert [json.loads(text) for text in ref_metadata] == metadata

    with tmp_store.snapshot() as snap:
        assert snap.sets == ["train"]
        info = snap.info("train")
        assert (info.k, info.dtype, info.rows) == (16, "float32", 65)
        np.testing.assert_array_equal(snap.rows("train", copy=True), expected)
        assert snap.ids("train") == ids
        assert snap.labels("train") == labels
        assert [json.loads(text) for text in snap.metadata("train")] == metadata
        assert snap.attributes("train")["gradient_kind"] == "per-example-loss-gradient"
        assert snap.projection("train") is None
        live = snap.addresses("train")
        assert len(live) == 65
        assert snap.ids("train", live[[50, 5]]) == [ids[50], ids[5]]
        assert snap.ids("train", [(0, 3), (0, 1)]) == [ids[3], ids[1]]  # plain pairs work too


def test_float16_rows_are_zero_copy_read_only_views_of_the_mapping(tmp_store):
    rows = _random_rows(50, 8, 3, "float16")
    _write(tmp_store, "half", rows)
    with tmp_store.snapshot() as snap:
        [segment] = snap.segments("half")
        whole = snap.rows("half")
        view = _native.gs_segment_view()
        _native.call("gs_snapshot_segment_view", snap._pointer, b"half", 0, _native.byref(view))
    # The arrays point at the engine's mapped data, not at a copy.
    assert segment.dtype == np.float16 and whole.dtype == np.float16
    assert segment.__array_interface__["data"][0] == view.data
    assert whole.__array_interface__["data"][0] == view.data
    assert np.shares_memory(segment, whole)
    assert not segment.flags.writeable and not whole.flags.writeable
    with pytest.raises(ValueError):
        whole[0, 0] = 1
    np.testing.assert_array_equal(whole, rows)


def test_closing_a_snapshot_keeps_borrowed_arrays_valid(tmp_store):
    rows = _random_rows(30, 4, 4)
    _write(tmp_store, "s", rows)
    snap = tmp_store.snapshot()
    array = snap.rows("s")
    handle = snap._handle
    snap.close()
    assert snap.closed and not handle.released  # the array still holds the engine snapshot
    with pytest.raises(gs.InvalidStateError):
        snap.rows("s")
    del snap, handle
    gc.collect()
    np.testing.assert_array_equal(array, rows)  # readable after close and collection
    owner = weakref.ref(array.base.owner)
    assert owner() is not None and not owner().released
    del array
    gc.collect()
    assert owner() is None  # the engine snapshot was freed with the last view


# ---- queries and selections ----------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_query_top_k_matches_numpy(tmp_store, metric):
    rows = _random_rows(300, 24, 5)
    ids = _write(tmp_store, "s", rows)
    queries = _random_rows(3, 24, 6)
    order, expected_scores = _numpy_top_k(rows, queries, 7, metric)
    with tmp_store.snapshot() as snap:
        result = snap.query("s", queries, k=7, metric=metric, index="exact")
    assert len(result.lists) == 3 and result.version == tmp_store.latest_version()
    assert result.ids() == [[ids[i] for i in line] for line in order]
    norms = np.linalg.norm(rows, axis=1).max() * np.linalg.norm(queries, axis=1).max()
    scale = 1.0 if metric == "cosine" else norms
    for got, want in zip(result.scores(), expected_scores):
        np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_TOLERANCE * scale)
    assert result.lists[0][0].address == (0, int(order[0, 0]))


def test_single_query_result_acts_as_its_list_and_row_id_query_matches_vector(tmp_store):
    rows = _random_rows(100, 12, 7)
    ids = _write(tmp_store, "s", rows)
    order, _ = _numpy_top_k(rows, rows[17], 5, "ip")
    with tmp_store.snapshot() as snap:
        by_vector = snap.query("s", rows[17], k=5)
        by_id = snap.query("s", row_id=ids[17], k=5)
        lowest = snap.query("s", rows[17], k=3, smallest=True)
    assert len(by_vector) == 5 and [hit.id for hit in by_vector] == [ids[i] for i in order[0]]
    assert [hit.id for hit in by_id] == [hit.id for hit in by_vector]
    assert by_vector[0].label == "" and by_vector[0].metadata == ""
    bottom = np.argsort(rows.astype(np.float64) @ rows[17].astype(np.float64), kind="stable")[:3]
    assert [hit.id for hit in lowest] == [ids[i] for i in bottom]


def _numpy_greedy(rows: np.ndarray, target: np.ndarray, count: int) -> tuple[list[int], list[float]]:
    """SELECT oracle (algorithms.md §1): count times pick the unpicked row maximising
    cos(S + s_i, q), S the sum of the rows picked so far; float64 throughout."""
    s = rows.astype(np.float64)
    q = target.astype(np.float64)
    total = np.zeros_like(q)
    picked: list[int] = []
    scores: list[float] = []
    for _ in range(count):
        candidates = total + s
        cosines = candidates @ q / (np.linalg.norm(candidates, axis=1) * np.linalg.norm(q))
        cosines[picked] = -np.inf
        best = int(np.argmax(cosines))
        picked.append(best)
        scores.append(float(cosines[best]))
        total = total + s[best]
    return picked, scores


def test_select_greedy_and_top_k_match_numpy(tmp_store):
    rows = _random_rows(200, 16, 8)
    ids = _write(tmp_store, "s", rows)
    target = _random_rows(1, 16, 9)[0]
    picked, scores = _numpy_greedy(rows, target, 8)
    cosine_order, cosine_scores = _numpy_top_k(rows, target, 8, "cosine")
    with tmp_store.snapshot() as snap:
        greedy = snap.select("s", target, count=8, method="greedy")
        top = snap.select("s", target, count=8, method="top-k")
    assert greedy.ids == [ids[i] for i in picked]
    np.testing.assert_allclose(greedy.scores, scores, rtol=0, atol=SCORE_TOLERANCE)
    assert list(greedy.addresses["row"]) == picked
    assert top.ids == [ids[i] for i in cosine_order[0]]
    np.testing.assert_allclose(top.scores, cosine_scores[0], rtol=0, atol=SCORE_TOLERANCE)


def test_one_snapshot_answers_a_thousand_queries(tmp_store):
    rows = _random_rows(64, 8, 10)
    ids = _write(tmp_store, "s", rows)
    queries = _random_rows(1000, 8, 11)
    best = np.argmax(queries.astype(np.float64) @ rows.astype(np.float64).T, axis=1)
    with tmp_store.snapshot() as snap:
        answers = [snap.query("s", q, k=1, annotations=False)[0].id for q in queries]
    assert answers == [ids[i] for i in best]


def test_cli_and_package_agree_on_a_query(tmp_store, gradsketch_cli, tmp_path):
    rows = _random_rows(120, 10, 12)
    _write(tmp_store, "s", rows)
    query = _random_rows(1, 10, 13)[0]
    np.save(tmp_path / "q.npy", query)
    completed = subprocess.run(
        [gradsketch_cli, "query", tmp_store.path, "--set", "s", "--vector", str(tmp_path / "q.npy"),
         "-k", "5", "--exact", "--json"],
        check=True, capture_output=True, text=True)
    cli = json.loads(completed.stdout)
    with tmp_store.snapshot() as snap:
        result = snap.query("s", query, k=5, index="exact")
    cli_hits = _cli_hits(cli)
    assert [hit["id"] for hit in cli_hits] == [hit.id for hit in result]
    np.testing.assert_allclose([hit["score"] for hit in cli_hits], [hit.score for hit in result], rtol=0, atol=1e-6)


def _cli_hits(document: object) -> list[dict]:
    """The first list of hits in the CLI's JSON (a list of {id, score, ...} objects)."""
    if isinstance(document, list) and document and isinstance(document[0], dict) and "id" in document[0]:
        return document
    if isinstance(document, dict):
        for value in document.values():
            found = _cli_hits(value)
            if found:
                return found
    if isinstance(document, list):
        for value in document:
            found = _cli_hits(value)
            if found:
                return found
    return []


# ---- deletions and versions ----------------------------------------------------------------


def test_delete_leaves_older_snapshots_unchanged(tmp_store):
    rows = _random_rows(10, 4, 14)
    ids = _write(tmp_store, "s", rows)
    before = tmp_store.latest_version()
    version = tmp_store.delete("s", [ids[3], ids[7]])
    assert version == before + 1 == tmp_store.latest_version()
    with tmp_store.snapshot(before) as old, tmp_store.snapshot() as new:
        assert ids[3] in old.ids("s") and old.info("s").rows == 10
        assert new.ids("s") == [i for n, i in enumerate(ids) if n not in (3, 7)]
        keep = [n for n in range(10) if n not in (3, 7)]
        np.testing.assert_array_equal(new.rows("s"), rows[keep])
        assert list(new.addresses("s")["row"]) == keep
        assert [list(d) for d in new.deleted("s")] == [[3, 7]]
        with pytest.raises(gs.InvalidInputError):
            new.rows("s", copy=False)
        assert ids[3] not in new.query("s", rows[3], k=10).ids()[0]
    with pytest.raises(gs.NotFoundError):
        tmp_store.delete("s", ["no-such-id"])
    assert tmp_store.latest_version() == version


def test_context_manager_aborts_on_exception(tmp_store):
    before = tmp_store.latest_version()
    with pytest.raises(RuntimeError, match="boom"):
        with tmp_store.append_session("s") as session:
            session.append(_random_rows(5, 4, 15), ids=[f"a{i}" for i in range(5)])
            raise RuntimeError("boom")
    assert session.state == "aborted"
    assert tmp_store.latest_version() == before
    with tmp_store.snapshot() as snap:
        assert snap.sets == []


def test_verify_reports_a_clean_store(tmp_store):
    _write(tmp_store, "s", _random_rows(20, 4, 16))
    report = tmp_store.verify()
    assert report.clean and report.problems == [] and report.files_checked >= 2 and report.bytes_checked > 0


# ---- errors --------------------------------------------------------------------------------


def test_wrong_width_is_invalid_input_naming_expected_and_found(tmp_store):
    _write(tmp_store, "s", _random_rows(4, 8, 17))
    with pytest.raises(gs.InvalidInputError) as caught:
        with tmp_store.append_session("s") as session:
            session.append(_random_rows(2, 5, 18), ids=["x", "y"])
    message = str(caught.value)
    assert "8" in message and "5" in message and caught.value.status == "INVALID_INPUT"
    assert isinstance(caught.value, ValueError)
    with tmp_store.snapshot() as snap:
        with pytest.raises(gs.InvalidInputError) as query_error:
            snap.query("s", np.ones(5, dtype=np.float32))
    assert "8" in str(query_error.value) and "5" in str(query_error.value)


def test_unknown_set_is_not_found(tmp_store):
    with tmp_store.snapshot() as snap:
        with pytest.raises(gs.NotFoundError) as caught:
            snap.info("missing")
    assert "missing" in str(caught.value) and isinstance(caught.value, LookupError)


def test_opening_a_non_store_is_not_a_store(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(gs.NotAStoreError):
        gs.Store.open(tmp_path / "plain")


def test_nan_rows_are_refused_unless_allowed(tmp_store):
    rows = _random_rows(3, 4, 19)
    rows[1, 2] = np.nan
    with pytest.raises(gs.InvalidInputError) as caught:
        with tmp_store.append_session("strict") as session:
            session.append(rows, ids=["a", "b", "c"])
    assert "finite" in str(caught.value).lower() or "nan" in str(caught.value).lower()
    with tmp_store.snapshot() as snap:
        assert "strict" not in snap.sets
    _write(tmp_store, "loose", rows, allow_nonfinite=True)
    with tmp_store.snapshot() as snap:
        stored = snap.rows("loose")
    assert np.isnan(stored[1, 2]) and np.array_equal(np.isnan(stored), np.isnan(rows))


def test_id_count_must_match_rows(tmp_store):
    with tmp_store.append_session("s") as session:
        with pytest.raises(gs.InvalidInputError, match="expected 3 strings"):
            session.append(_random_rows(3, 4, 20), ids=["a", "b"])
        session.abort()


def test_finished_session_refuses_more_rows(tmp_store):
    session = tmp_store.append_session("s")
    session.append(_random_rows(2, 4, 21), ids=["a", "b"])
    session.commit()
    with pytest.raises(gs.InvalidStateError):
        session.append(_random_rows(2, 4, 22), ids=["c", "d"])


# ---- torch inputs --------------------------------------------------------------------------


def test_torch_tensors_bfloat16_float16_and_non_contiguous(tmp_store):
    import torch

    generator = torch.Generator().manual_seed(23)
    bf16 = torch.randn(6, 8, generator=generator).to(torch.bfloat16)
    _write(tmp_store, "bf", bf16)
    half = torch.randn(5, 8, generator=generator).to(torch.float16)
    _write(tmp_store, "half", half)
    transposed = torch.randn(8, 7, generator=generator).t()  # (7, 8), not contiguous
    assert not transposed.is_contiguous()
    _write(tmp_store, "t", transposed)
    with tmp_store.snapshot() as snap:
        stored = snap.rows("bf")
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, bf16.float().numpy())  # exact widening
        assert snap.rows("half").dtype == np.float16
        np.testing.assert_array_equal(snap.rows("half"), half.numpy())
        np.testing.assert_array_equal(snap.rows("t"), transposed.contiguous().numpy())


# ---- projections, tensor sets, deltas, versions, prepared commits (ABI 1.1) ---------------


@pytest.mark.parametrize("seed", [42, 2**64 - 1])
def test_rademacher_matches_the_spec_reference(projection_reference, seed):
    got = gs.projection.rademacher(seed, "fc1.weight/out", 8, 20)
    want = projection_reference.rademacher(seed, "fc1.weight/out", 8, 20)
    assert got.dtype == np.float32 and got.shape == (8, 20)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, gs.projection.rademacher(seed, "fc1.weight/in", 8, 20))


def test_tensor_sets_state_dicts_and_deltas_read_back_by_the_reference_reader(tmp_store, reference, tmp_path):
    import torch

    rng = np.random.default_rng(24)
    base = {"w": rng.standard_normal((6, 5)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float16)}
    v_base = tmp_store.put_tensors("base", base, detail="base weights")
    layer = torch.nn.Linear(5, 6)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(6))
    state = {"w": layer.weight.detach().to(torch.bfloat16), "b": torch.tensor(base["b"]) + 1,
             "steps": torch.tensor(7)}  # an integer entry: skipped, tensor sets hold floats
    v_ft = tmp_store.put_state_dict("finetuned", state)
    v_delta = tmp_store.delta("d", "base", "finetuned")
    assert v_base < v_ft < v_delta == tmp_store.latest_version()

    read = reference.read_tensors(tmp_store.path, "finetuned")
    assert sorted(read) == ["b", "w"]
    np.testing.assert_array_equal(read["w"], state["w"].float().numpy())  # bfloat16 widened exactly
    delta = reference.read_tensors(tmp_store.path, "d")
    np.testing.assert_array_equal(delta["w"], read["w"].astype(np.float32) - base["w"])
    np.testing.assert_array_equal(delta["b"], read["b"].astype(np.float32) - base["b"].astype(np.float32))

    from safetensors.numpy import save_file

    save_file({"w": base["w"] * 2}, str(tmp_path / "model.safetensors"))
    tmp_store.put_state_dict("from-file", tmp_path / "model.safetensors")
    np.testing.assert_array_equal(reference.read_tensors(tmp_store.path, "from-file")["w"], base["w"] * 2)

    with tmp_store.snapshot() as snap:
        assert snap.tensor_sets == ["base", "d", "finetuned", "from-file"]
    versions = tmp_store.versions()
    assert [entry["version"] for entry in versions] == list(range(tmp_store.latest_version() + 1))
    assert versions[v_base]["detail"] == "base weights"


def test_query_and_select_by_delta_use_the_sets_projection(tmp_store, projection_reference):
    n_out, n_in, k_out, k_in, seed = 6, 5, 2, 3, 1234
    definition = gs.projection.definition(
        seed, [gs.projection.kronecker_layout("w", [n_out, n_in], k_out, k_in)])
    rows = _random_rows(80, k_out * k_in, 25)
    ids = _write(tmp_store, "s", rows, projection=definition)
    rng = np.random.default_rng(26)
    base = rng.standard_normal((n_out, n_in)).astype(np.float32)
    tuned = base + rng.standard_normal((n_out, n_in)).astype(np.float32)
    tmp_store.put_tensors("base", {"w": base})
    tmp_store.put_tensors("tuned", {"w": tuned})
    tmp_store.delta("d", "base", "tuned")
    p_out = projection_reference.rademacher(seed, "w/out", k_out, n_out).astype(np.float64)
    p_in = projection_reference.rademacher(seed, "w/in", k_in, n_in).astype(np.float64)
    d = (tuned - base).astype(np.float64)
    projected = (p_out @ d @ p_in.T).reshape(-1)  # (P_out ⊗ P_in) vec(D), row-major
    order, scores = _numpy_top_k(rows, projected, 5, "ip")
    negated_order, _ = _numpy_top_k(rows, -projected, 5, "ip")
    picked, _ = _numpy_greedy(rows, -projected, 4)
    with tmp_store.snapshot() as snap:
        assert snap.projection("s") == definition
        by_delta = snap.query("s", delta="d", k=5)
        by_negated = snap.query("s", delta="d", negate=True, k=5)
        selected = snap.select("s", delta="d", count=4)  # negate=True: rows along −delta
    assert [hit.id for hit in by_delta] == [ids[i] for i in order[0]]
    np.testing.assert_allclose([hit.score for hit in by_delta], scores[0], rtol=1e-4, atol=1e-4)
    assert [hit.id for hit in by_negated] == [ids[i] for i in negated_order[0]]
    assert selected.ids == [ids[i] for i in picked]


def test_prepared_sessions_commit_as_one_version(tmp_store):
    first, second = _random_rows(7, 4, 27), _random_rows(5, 4, 28)
    other = gs.Store.open(tmp_store.path)  # another handle, as another rank would have
    tokens, sessions = [], []
    for store, rows, prefix in ((tmp_store, first, "a"), (other, second, "b")):
        with store.append_session("s") as session:
            session.append(rows, ids=[f"{prefix}{i}" for i in range(len(rows))])
            tokens.append(session.prepare())
        assert session.state == "prepared"  # the block's end neither committed nor aborted it
        with pytest.raises(gs.InvalidStateError):
            session.commit()
        sessions.append(session)
    before = tmp_store.latest_version()
    version, added = other.commit_prepared(tokens, detail="two ranks")
    for session in sessions:
        session.close()  # the writer pins are no longer needed
    assert (version, added) == (before + 1, 12)
    with tmp_store.snapshot() as snap:
        np.testing.assert_array_equal(snap.rows("s", copy=True), np.concatenate([first, second]))
        assert snap.ids("s") == [f"a{i}" for i in range(7)] + [f"b{i}" for i in range(5)]
    with pytest.raises(gs.GradSketchError):
        tmp_store.commit_prepared(tokens)  # a token commits once
    assert tmp_store.latest_version() == version
    with tmp_store.append_session("s") as dropped:
        dropped.append(_random_rows(2, 4, 29), ids=["c0", "c1"])
        token = dropped.prepare()
    dropped.abort()  # the commit did not happen: its prepared files are removed
    assert dropped.state == "aborted"
    with pytest.raises(gs.GradSketchError):
        tmp_store.commit_prepared([token])
    assert tmp_store.latest_version() == version
    other.close()


def test_float64_and_big_endian_rows_are_stored_as_rounded_float32(tmp_store):
    wide = np.random.default_rng(30).standard_normal((9, 6)) * np.pi  # float64, not exact in float32
    big_endian = wide.astype(">f4")
    _write(tmp_store, "wide", wide)
    _write(tmp_store, "big", big_endian, prefix="b")
    with tmp_store.snapshot() as snap:
        stored = snap.rows("wide")
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, wide.astype(np.float32))  # round to nearest even
        np.testing.assert_array_equal(snap.rows("big"), big_endian.astype("<f4"))
