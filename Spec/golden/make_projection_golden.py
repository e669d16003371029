"""Regenerates Spec/golden/projection.json: projection entries computed by the numpy
reference (Spec/reference/projection_ref.py) from Spec/projection.md. The Swift tests
reproduce every value bit for bit, and re-run this reference to check it still does.

  python3 Spec/golden/make_projection_golden.py [--check]
"""
import json, os, sys
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import projection_ref as ref  # noqa: E402


def bits(array):
    return [int(b) for b in np.asarray(array, dtype=np.float32).view(np.uint32).ravel()]


def build():
    cases = []
    for seed, stream, k, d in [(0, "fc1.weight", 130, 3), (2**40 + 7, "model.layers.11.mlp.down_proj.weight", 8, 4), (5, "ü/∂", 4, 2)]:
        cases.append({"kind": "rademacher", "seed": seed, "stream": stream, "k": k, "d": d, "bits": bits(ref.rademacher(seed, stream, k, d))})
        cases.append({"kind": "gaussian", "seed": seed, "stream": stream, "k": k, "d": d, "bits": bits(ref.gaussian(seed, stream, k, d))})
    cases.append({"kind": "sparse", "seed": 9, "stream": "emb", "k": 16, "d": 10, "nonzeros": 3, "bits": bits(ref.sparse(9, "emb", 16, 10, 3))})
    cases.append({"kind": "srht", "seed": 17, "stream": "big", "k": 12, "d": 40, "block": 16,
                  "signs": [int(s) for s in ref.srht_signs(17, "big", 40)],
                  "rows": [ref.srht_rows(17, "big", 12, 16, b).tolist() for b in range(3)]})
    stream_ids = {name: list(ref.stream_id(name)) for name in ["", "fc1.weight", "fc1.weight/in", "ü/∂"]}
    return {"cases": cases, "stream_ids": stream_ids}


if __name__ == "__main__":
    path = os.path.join(here, "projection.json")
    golden = build()
    if "--check" in sys.argv:
        stored = json.load(open(path))
        sys.exit(0 if stored == json.loads(json.dumps(golden)) else 1)
    json.dump(golden, open(path, "w"), indent=0)
    print("wrote", path)
