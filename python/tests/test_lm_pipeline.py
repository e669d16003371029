"""gradsketch.lm.pipeline: the split's invariants, and ``prepare`` end to end on the small size
with shortened training (seconds), checked with the Spec's reference store reader.

The end-to-end test reads the real corpus (the Debian packages Tools/setup.sh installs).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from gradsketch.lm.config import SIZES, GPTConfig, SizeConfig
from gradsketch.lm.pipeline import prepare, split_documents


@dataclass(frozen=True)
class Doc:
    id: str
    source: str
    text: str


def synthetic_corpus(per_source: int = 30) -> list[Doc]:
    """Four sources whose texts differ in their alphabet, so a tiny model tells them apart."""
    alphabets = {"alpha": "abcdefgh ", "beta": "ijklmnop ", "gamma": "qrstuvwx ", "delta": "0123456789 "}
    documents = []
    for source, letters in alphabets.items():
        for i in range(per_source):
            text = "".join(letters[(i * 7 + j * j) % len(letters)] for j in range(20 + i % 13))
            documents.append(Doc(f"{source}/{i}", source, text))
    return documents


TINY = SizeConfig(name="tiny", model=GPTConfig(layers=1, width=16, heads=2, context=40), per_source=30,
                  held_out="delta", pool_size=20, held_out_share=0.2, eval_docs=5, base_steps=8, expert_steps=4,
                  retrain_steps=2, batch=8, lr=1e-3, base_lr=3e-3, select_k=4, sketch_k=(2, 3), sketch_seed=5,
                  seeds=(0, 1))


def test_split_is_disjoint_deterministic_and_shares_the_pool_as_asked():
    corpus = synthetic_corpus()
    train_docs, eval_docs, pool = split_documents(corpus, TINY)
    shuffled = [d for source in ("alpha", "beta", "gamma", "delta")      # same source order, documents reversed
                for d in reversed([d for d in corpus if d.source == source])]
    again = split_documents(shuffled, TINY)
    assert {d.id for d in pool} == {d.id for d in again[2]}          # by id hashes, not by position
    assert [d.id for d in pool] == [d.id for d in again[2]]
    for source in ("alpha", "beta", "gamma", "delta"):
        assert len(eval_docs[source]) == 5 and len(train_docs[source]) == 25
        assert not {d.id for d in eval_docs[source]} & {d.id for d in train_docs[source]}
    train_ids = {d.id for documents in train_docs.values() for d in documents}
    assert {d.id for d in pool} <= train_ids and len(pool) == 20
    counts = Counter(d.source for d in pool)
    assert counts["delta"] == 4                                        # round(20 · 0.2)
    assert sorted(counts[s] for s in ("alpha", "beta", "gamma")) == [5, 5, 6]   # 16 spread over three


def test_split_refuses_too_few_documents():
    with pytest.raises(ValueError, match="source 'alpha' has 10 documents, expected at least"):
        split_documents(synthetic_corpus(10), TINY)
    with pytest.raises(ValueError, match="held-out source 'omega'"):
        split_documents(synthetic_corpus(), dataclasses.replace(TINY, held_out="omega"))


def test_prepare_stores_base_expert_delta_and_pool(tmp_path, reference):
    lines: list[str] = []
    setup = prepare(str(tmp_path / "store"), TINY, log=lines.append, corpus=synthetic_corpus())
    try:
        assert setup.base_sources == ["alpha", "beta", "gamma"] and setup.held_out == "delta"
        assert setup.base_checkpoints == ["base-step2", "base-step4", "base-step6", "base"]
        assert len(setup.base_batches) == 8 and all(len(ids) == 8 for ids in setup.base_batches)
        assert all(not i.startswith("delta/") for ids in setup.base_batches for i in ids)
        pool_ids = {d.id for d in setup.pool}
        assert setup.expert_docs and all(d.source == "delta" and d.id not in pool_ids for d in setup.expert_docs)
        with setup.store.snapshot() as snapshot:
            assert {"base", "expert", "finetune", "base-step2", "base-step8"} <= set(snapshot.tensor_sets)
            assert snapshot.info("pool").rows == TINY.pool_size
            assert snapshot.ids("pool") == [d.id for d in setup.pool]
            assert snapshot.labels("pool") == [d.source for d in setup.pool]
            assert snapshot.attributes("pool")["tensor_set"] == "expert"
        store = str(setup.store.path)
        base, expert = reference.read_tensors(store, "base"), reference.read_tensors(store, "expert")
        delta = reference.read_tensors(store, "finetune")
        assert np.array_equal(base["head.weight"], reference.read_tensors(store, "base-step8")["head.weight"])
        for key in base:
            assert np.allclose(delta[key], expert[key] - base[key], atol=1e-7), key
        # setup.model (the engine's Snapshot.tensors) loads what the reference reader reads
        model = setup.model("expert")
        for key, value in model.state_dict().items():
            assert np.array_equal(value.numpy(), expert[key]), key
        assert set(setup.perplexity_table) == {"base", "expert"}
        assert all(np.isfinite(v) and v > 1 for t in setup.perplexity_table.values() for v in t.values())
        assert any("done in" in line for line in lines)
    finally:
        setup.close()
    with pytest.raises(FileExistsError):
        prepare(str(tmp_path / "store"), TINY, log=lines.append, corpus=synthetic_corpus())


def test_prepare_small_size_on_the_real_corpus(tmp_path):
    """SIZES["small"] as CI runs it, with training cut to a few steps so the test takes seconds."""
    config = dataclasses.replace(SIZES["small"], base_steps=4, expert_steps=2)
    setup = prepare(str(tmp_path / "store"), config, log=lambda line: None)
    try:
        assert set(setup.train_docs) == {"fortunes", "poems", "manpages", "python-docs", "c-headers", "changelogs"}
        assert all(len(docs) == config.eval_docs for docs in setup.eval_docs.values())
        with setup.store.snapshot() as snapshot:
            assert {"base", "expert", "finetune"} <= set(snapshot.tensor_sets)
            assert snapshot.info("pool").rows == config.pool_size
        assert sum(d.source == "manpages" for d in setup.pool) == round(config.pool_size * config.held_out_share)
    finally:
        setup.close()


# ----- python -m gradsketch lm ... (the README's text path), run in-process -----------------------


def lm(capsys, *arguments: str) -> tuple[int, dict | None, str]:
    """Runs ``python -m gradsketch lm ARGS`` in this process: (status, JSON printed or None, stderr)."""
    import json

    from gradsketch.__main__ import main

    status = main(["lm", *arguments])
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if status == 0 else None), captured.err


def test_text_path_train_finetune_sketch_select_retrain_eval(tmp_path, capsys, reference, gradsketch_cli):
    import json
    import subprocess

    import gradsketch as gs
    from gradsketch.lm.corpus import Document, write_jsonl

    documents = [Document(d.id, d.source, d.text) for d in synthetic_corpus(12)]
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(documents, corpus)
    store = str(tmp_path / "run.gsk")
    status, out, err = lm(capsys, "train", store, "--corpus", str(corpus), "--name", "base", "--exclude-source",
                          "delta", "--steps", "3", "--json")
    assert status == 0, err
    assert out["documents"] == 36 and "delta" not in out["sources"] and out["model"] == SIZES["small"].model.to_dict()
    assert out["lr"] == SIZES["small"].pretrain_lr
    # --from with 0 steps stores the starting model unchanged: the load path is exact
    status, out, err = lm(capsys, "train", store, "--corpus", str(corpus), "--name", "copy", "--from", "base",
                          "--source", "delta", "--steps", "0")
    assert status == 0, err
    base, copy = reference.read_tensors(store, "base"), reference.read_tensors(store, "copy")
    assert all(np.array_equal(base[key], copy[key]) for key in base)
    status, out, err = lm(capsys, "train", store, "--corpus", str(corpus), "--name", "expert", "--from", "base",
                          "--source", "delta", "--steps", "2")
    assert status == 0 and out["sources"] == {"delta": 12} and out["lr"] == SIZES["small"].lr, err
    with gs.Store.open(store) as opened:
        opened.delta("finetune", "base", "expert")
    pool = tmp_path / "pool.jsonl"
    write_jsonl(documents[::2], pool)
    status, out, err = lm(capsys, "sketch", store, "--checkpoint", "expert", "--set", "pool", "--corpus", str(pool),
                          "--k", "2,3", "--seed", "9")
    assert status == 0, err
    assert out["rows"] == 24 and out["k"] == 2 * 3 * (6 * 2 + 1)
    selected = subprocess.run([gradsketch_cli, "select", store, "--set", "pool", "--delta", "finetune", "--negate",
                               "-k", "5", "--json"], check=True, capture_output=True, text=True).stdout
    (tmp_path / "selected.json").write_text(selected)
    chosen = [row["id"] for row in json.loads(selected)["rows"]]
    status, out, err = lm(capsys, "retrain", store, "--from", "base", "--corpus", str(pool), "--ids",
                          str(tmp_path / "selected.json"), "--name", "retrained", "--steps", "2")
    assert status == 0 and out["ids"] == 5, err
    expected_sources: dict[str, int] = {}
    for document in documents:
        if document.id in chosen:
            expected_sources[document.source] = expected_sources.get(document.source, 0) + 1
    assert out["sources"] == expected_sources
    (tmp_path / "ids.txt").write_text("\n".join(chosen[:2]) + "\n")
    status, out, err = lm(capsys, "retrain", store, "--from", "base", "--corpus", str(pool), "--ids",
                          str(tmp_path / "ids.txt"), "--name", "retrained2", "--steps", "1")
    assert status == 0 and out["ids"] == 2, err
    status, out, err = lm(capsys, "eval", store, "--checkpoint", "retrained", "--corpus", str(corpus))
    assert status == 0, err
    assert set(out["perplexity"]) == {"alpha", "beta", "gamma", "delta"} and out["documents"]["alpha"] == 12
    assert min(out["perplexity"].values()) <= out["overall"] <= max(out["perplexity"].values())


def test_text_path_errors_are_clear(tmp_path, capsys):
    from gradsketch.lm.corpus import Document, write_jsonl

    corpus = tmp_path / "corpus.jsonl"
    write_jsonl([Document(d.id, d.source, d.text) for d in synthetic_corpus(3)], corpus)
    store = str(tmp_path / "run.gsk")
    assert lm(capsys, "train", store, "--corpus", str(corpus), "--name", "base", "--steps", "1")[0] == 0
    status, _, err = lm(capsys, "train", store, "--corpus", str(corpus), "--name", "x", "--from", "base", "--steps",
                        "1", "--size", "default")
    assert status == 1 and "is a TinyGPT of" in err and "--size default" in err
    status, _, err = lm(capsys, "eval", store, "--checkpoint", "nothing", "--corpus", str(corpus))
    assert status == 1 and "nothing" in err
    (tmp_path / "ids.txt").write_text("alpha/0\nno-such-id\n")
    status, _, err = lm(capsys, "retrain", store, "--from", "base", "--corpus", str(corpus), "--ids",
                        str(tmp_path / "ids.txt"), "--name", "r", "--steps", "1")
    assert status == 1 and "1 of 2 ids are not in" in err and "no-such-id" in err
    status, _, err = lm(capsys, "train", store, "--corpus", str(tmp_path / "missing.jsonl"), "--name", "y",
                        "--steps", "1")
    assert status == 1 and "does not exist" in err


def test_corpus_command_writes_the_suites_split(tmp_path, capsys):
    from gradsketch.lm.corpus import read_jsonl

    out_path = tmp_path / "corpus.jsonl"
    status, out, err = lm(capsys, "corpus", str(out_path), "--size", "small", "--per-source", "40", "--split")
    assert status == 0, err
    everything = read_jsonl(out_path)
    assert out["documents"] == len(everything) and sum(out["sources"].values()) == len(everything)
    assert all(32 <= len(d.text.encode("utf-8")) <= 65 for d in everything)     # small: the context + 1 bytes
    parts = {part: read_jsonl(tmp_path / f"corpus-{part}.jsonl") for part in ("base", "expert", "pool", "eval")}
    ids = {part: {d.id for d in docs} for part, docs in parts.items()}
    assert set().union(*ids.values()) == {d.id for d in everything}
    assert not ids["eval"] & (ids["base"] | ids["expert"] | ids["pool"])
    assert not ids["expert"] & ids["pool"] and {d.source for d in parts["expert"]} == {"manpages"}
    assert "manpages" not in {d.source for d in parts["base"]}
    assert len(parts["pool"]) == 120 and sum(d.source == "manpages" for d in parts["pool"]) == 12
    # the public pool overlaps pretraining: its base-source documents are base training documents
    assert {d.id for d in parts["pool"] if d.source != "manpages"} <= ids["base"]
    assert len(parts["eval"]) == 10 * len(out["sources"])
    assert out["split"]["expert"]["documents"] == 40 - 10 - 12
