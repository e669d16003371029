"""Regenerates the golden store and the values the tests expect of it.

  python3 Spec/golden/make_golden.py

Writes Spec/golden/store/ with the reference writer (Spec/reference/gradsketch_ref.py) and
Spec/golden/expected.json with values numpy computes independently of any store code.
File names, ids of segments and timestamps differ on every run; the values do not.
"""
import json, os, shutil, sys
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import gradsketch_ref as ref  # noqa: E402

store = os.path.join(here, "store")
shutil.rmtree(store, ignore_errors=True)
rng = np.random.default_rng(2026)

ref.create_store(store)
f32 = rng.standard_normal((33, 16)).astype(np.float32)
ref.append(store, "train", f32, ids=[f"train-{i:03d}" for i in range(33)],
           labels=[["web", "code", "math"][i % 3] for i in range(33)],
           metadata=[json.dumps({"tokens": int(t)}) for t in rng.integers(10, 500, 33)], metadata_kind="json",
           columns={"loss": rng.gamma(2.0, 1.0, 33)},
           attributes={"tensor_set": "base", "gradient_kind": "per-example-loss-gradient", "training_step": 100})
f16 = (rng.standard_normal((9, 16)) * 4).astype(np.float16)
f16[0, :4] = [65504, -65504, 2.0**-24, -0.0]
ref.append(store, "train", f16.astype(np.float32), ids=[f"extra-{i}" for i in range(9)])
ref.delete(store, "train", ["train-005", "extra-8"])
half = (rng.standard_normal((12, 8))).astype(np.float16)
ref.append(store, "valid", half, ids=[f"valid-{i}" for i in range(12)])
base = {"embed/weight": rng.standard_normal((4, 3)).astype(np.float32), "bias": rng.standard_normal(3).astype(np.float32)}
tuned = {n: (v + np.float32(0.125)).astype(np.float32) for n, v in base.items()}
ref.put_tensors(store, "base", base)
ref.put_tensors(store, "tuned", tuned)
ref.delta(store, "finetune", "base", "tuned")

# Expected values, from the inputs with numpy only.
keep = [i for i in range(33) if i != 5]
train_rows = np.concatenate([f32[keep], f16[:8].astype(np.float32)])
expected = {
    "latest_version": 7,
    "sets": {
        "train": {"rows": len(train_rows), "k": 16, "dtype": "float32",
                  "ids": [f"train-{i:03d}" for i in keep] + [f"extra-{i}" for i in range(8)],
                  "first_row": [float(x) for x in train_rows[0]], "last_row": [float(x) for x in train_rows[-1]],
                  "sum": float(train_rows.astype(np.float64).sum()),
                  "labels": [["web", "code", "math"][i % 3] for i in keep] + [""] * 8,
                  "rows_at_version_2": 42},
        "valid": {"rows": 12, "k": 8, "dtype": "float16", "ids": [f"valid-{i}" for i in range(12)],
                  "bits": [int(b) for b in half.view(np.uint16).ravel()],
                  "sum": float(half.astype(np.float64).sum())},
    },
    "tensor_sets": {
        "base": {"content_hash": ref.content_hash(base)},
        "tuned": {"content_hash": ref.content_hash(tuned)},
        "finetune": {"content_hash": ref.content_hash({n: tuned[n] - base[n] for n in base}),
                     "bias": [float(x) for x in (tuned["bias"] - base["bias"])]},
    },
    "crc32c": {"123456789": "e3069283", "32 zero bytes": "8a9136aa", "32 0xff bytes": "62a8ab43",
               "bytes 0..31": "46dd794e"},
    "float16_from_float32": {str(v): int(np.float32(v).astype(np.float16).view(np.uint16))
                             for v in [65504.0, 65519.0, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 1 + 2.0**-11, 1 + 3 * 2.0**-11]},
    "bfloat16_to_float32": {"0x3f81": float(np.array([0x3f810000], dtype=np.uint32).view(np.float32)[0])},
}
with open(os.path.join(here, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
print("golden store and expected.json written")
