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
    # Seeds that binary64 cannot hold (2^53 + 1, 2^64 − 1) for every kind, and the matrix
    # entries of every kind, including SRHT with k = 6, whose binary32 scale a float32 1/√k
    # gets wrong, and sparse JL with duplicate rows in a column.
    for seed in [2**53 + 1, 2**64 - 1]:
        cases.append({"kind": "rademacher", "seed": seed, "stream": "w", "k": 5, "d": 3, "bits": bits(ref.rademacher(seed, "w", 5, 3))})
        cases.append({"kind": "gaussian", "seed": seed, "stream": "w", "k": 5, "d": 3, "bits": bits(ref.gaussian(seed, "w", 5, 3))})
        cases.append({"kind": "sparse", "seed": seed, "stream": "w", "k": 3, "d": 12, "nonzeros": 4, "bits": bits(ref.sparse(seed, "w", 3, 12, 4))})
        cases.append({"kind": "srht", "seed": seed, "stream": "w", "k": 6, "d": 20, "block": 8,
                      "signs": [int(x) for x in ref.srht_signs(seed, "w", 20)],
                      "rows": [ref.srht_rows(seed, "w", 6, 8, b).tolist() for b in range(3)],
                      "bits": bits(ref.srht_matrix(seed, "w", 6, 20, 8))})
        cases.append({"kind": "kronecker", "seed": seed, "stream": "fc.weight", "k_out": 3, "n_out": 4, "k_in": 2, "n_in": 5,
                      "entries": [int(v) for v in ref.kronecker_matrix(seed, "fc.weight", 3, 4, 2, 5).view(np.uint64).ravel()]})
    stream_ids = {name: list(ref.stream_id(name)) for name in ["", "fc1.weight", "fc1.weight/in", "ü/∂"]}
    scales = {str(n): int(np.float32(ref.scale32(n)).view(np.uint32)) for n in
              [1, 2, 3, 4, 6, 7, 17, 300, 1000, 65536, 65537, 1 << 20, 10**9 + 7, 2**31 - 1, 2**32 - 1]}
    return {"cases": cases, "stream_ids": stream_ids, "scales": scales}


if __name__ == "__main__":
    path = os.path.join(here, "projection.json")
    golden = build()
    if "--check" in sys.argv:
        stored = json.load(open(path))
        sys.exit(0 if stored == json.loads(json.dumps(golden)) else 1)
    json.dump(golden, open(path, "w"), indent=0)
    print("wrote", path)
