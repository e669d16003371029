#!/usr/bin/env bash
# The tour: builds a store from generated data, versions it, verifies it, exports it and
# checks every exported value against numpy and h5py; then runs the real pipeline on
# Fashion-MNIST: train an MLP, store checkpoints and their delta, sketch per-example
# gradients, project the delta into a query; the selection/attribution experiments on Fashion-MNIST
# and then on a byte-level language model trained here on Debian's text (the LM suite, size
# $GRADSKETCH_LM_SIZE: small, default or full; default when unset).
# Usage: Tools/tour.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)/tour}"
mkdir -p "$work"
store="$work/store"
rm -rf "$store"

swift build -c release --product gradsketch >&2
swift build -c release --product gradsketch-reproduce >&2
gs() { .build/release/gradsketch "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "generate per-example sketches, ids, labels, metadata and weights with numpy ($work)"
python3 - "$work" <<'PY'
import json, struct, sys
import numpy as np
work = sys.argv[1]
rng = np.random.default_rng(7)
k = 512
for part, n in (("a", 20000), ("b", 12000)):
    np.save(f"{work}/sketch_{part}.npy", rng.standard_normal((n, k), dtype=np.float32))
    with open(f"{work}/ids_{part}.txt", "w") as f:
        f.writelines(f"doc-{part}-{i:06d}\n" for i in range(n))
    with open(f"{work}/labels_{part}.txt", "w") as f:
        f.writelines(f"{['code', 'math', 'web'][i % 3]}\n" for i in range(n))
    with open(f"{work}/meta_{part}.jsonl", "w") as f:
        f.writelines(json.dumps({"tokens": int(t)}) + "\n" for t in rng.integers(50, 2048, n))
    np.save(f"{work}/loss_{part}.npy", rng.gamma(2.0, 1.0, n))
with open(f"{work}/drop.txt", "w") as f:
    f.writelines(f"doc-a-{i:06d}\n" for i in range(0, 20000, 97))

def safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = array.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data); offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text))); f.write(text); f.writelines(blobs)
base = {"embed.weight": rng.standard_normal((1000, 64)), "mlp.up": rng.standard_normal((64, 256)), "mlp.bias": rng.standard_normal(256)}
tuned = {name: value + 0.01 * rng.standard_normal(value.shape) for name, value in base.items()}
safetensors(f"{work}/base.safetensors", base)
safetensors(f"{work}/tuned.safetensors", tuned)
PY

step "create the store and put the base and finetuned weights, and their delta"
gs init "$store"
gs tensors put "$store" --name base "$work/base.safetensors"
gs tensors put "$store" --name tuned "$work/tuned.safetensors"
gs tensors delta "$store" --name finetune --from base --to tuned

step "append two batches of sketches (float32 input stored as float16)"
gs append "$store" --set train --rows "$work/sketch_a.npy" --ids "$work/ids_a.txt" --labels "$work/labels_a.txt" \
  --metadata "$work/meta_a.jsonl" --metadata-kind json --column "loss=$work/loss_a.npy" --dtype float16 \
  --attribute 'tensor_set="base"' --attribute 'gradient_kind="per-example-loss-gradient"' --attribute training_step=1000
gs append "$store" --set train --rows "$work/sketch_b.npy" --ids "$work/ids_b.txt" --labels "$work/labels_b.txt" \
  --metadata "$work/meta_b.jsonl" --metadata-kind json --column "loss=$work/loss_b.npy"

step "refuse bad input without touching the store (a duplicate id batch)"
if gs append "$store" --set train --rows "$work/sketch_b.npy" --ids "$work/ids_b.txt"; then
  echo "tour: a duplicate append was accepted" >&2; exit 1
fi

step "delete rows, then read the store now and as of the version before"
gs delete "$store" --set train --ids "$work/drop.txt"
gs info "$store"
gs log "$store"
gs export "$store" --set train --out "$work/train_now.npy" --ids-out "$work/train_now_ids.txt" --dtype float32
gs export "$store" --set train --out "$work/train_before.npy" --at 5 --dtype float32

step "verify every byte, pack into one HDF5 file"
gs verify "$store"
gs pack "$store" --out "$work/packed.h5"
gs info "$store" --json > "$work/info.json"

step "check the exports and the packed file against numpy and h5py"
python3 - "$work" <<'PY'
import json, sys
import h5py, numpy as np
work = sys.argv[1]
a, b = np.load(f"{work}/sketch_a.npy"), np.load(f"{work}/sketch_b.npy")
dropped = set(range(0, 20000, 97))
keep = np.array([i not in dropped for i in range(20000)])
expected_now = np.concatenate([a[keep], b]).astype(np.float16).astype(np.float32)
expected_before = np.concatenate([a, b]).astype(np.float16).astype(np.float32)
now, before = np.load(f"{work}/train_now.npy"), np.load(f"{work}/train_before.npy")
assert np.array_equal(now, expected_now), "export of the latest version differs from numpy"
assert np.array_equal(before, expected_before), "export as of version 5 differs from numpy"
ids = open(f"{work}/train_now_ids.txt").read().split()
assert ids[:3] == ["doc-a-000001", "doc-a-000002", "doc-a-000003"] and len(ids) == len(now)
with h5py.File(f"{work}/packed.h5", "r") as f:
    train = f["sketch_sets/train"]
    assert np.array_equal(train["rows"][()].astype(np.float32), expected_now)
    assert [s.decode() for s in train["ids"][()]] == ids
    assert np.allclose(train["columns/loss"][()], np.concatenate([np.load(f"{work}/loss_a.npy")[keep], np.load(f"{work}/loss_b.npy")]))
    delta = f["tensor_sets/finetune"]
    assert delta.attrs["kind"].decode() == "delta"  # fixed-length strings read as bytes (Spec §2.3)
info = json.load(open(f"{work}/info.json"))
print(f"tour: ok — {len(now)} live rows (of {len(before)} before the delete), k={now.shape[1]}, "
      f"float16 storage, exports and packed file equal to numpy/h5py; info says {info['sketch_sets'][0]['rows']} rows")
PY

step "real data: train an MLP on Fashion-MNIST, checkpoint it, sketch per-example gradients"
real="$work/fashion"
rm -rf "$real"
gs init "$real"
gs train "$real" --split train --hidden 128 --epochs 1 --batch 128 --learning-rate 0.001 --name mlp
last=$(gs info "$real" --json | python3 -c 'import json,sys; print(sorted((t["name"] for t in json.load(sys.stdin)["tensor_sets"]), key=lambda n: int(n.split("step")[1]))[-1])')
gs tensors delta "$real" --name finetune --from mlp-step0 --to "$last"
gs sketch "$real" --split train --checkpoint "$last" --set train --side 32 --k-dense 64 --batch 2048
gs sketch "$real" --split test --checkpoint "$last" --set test --side 32 --k-dense 64 --batch 2048
gs project "$real" --delta finetune --seed 0 -k 1024 --negate --out "$work/query.npy"
gs info "$real"
gs verify "$real"

step "nearest gradients through an ANN index stored with the set, against exact search"
gs index build "$real" --set train --metric ip --recall-target 0.95
gs index info "$real" --set train
gs export "$real" --set test --out "$work/test.npy" --dtype float32
python3 - "$work" <<'PY'
import numpy as np, sys
work = sys.argv[1]
q = np.load(f"{work}/test.npy")[:20]
for i in range(20):
    np.save(f"{work}/q{i}.npy", q[i])
PY
hits=0
for i in $(seq 0 19); do
  approx=$(gs query "$real" --set train --vector "$work/q$i.npy" -k 10 --json | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)["results"][0]))')
  exact=$(gs query "$real" --set train --vector "$work/q$i.npy" -k 10 --exact --json | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)["results"][0]))')
  hits=$((hits + $(python3 -c 'import sys; print(len(set(sys.argv[1].split()) & set(sys.argv[2].split())))' "$approx" "$exact")))
done
echo "tour: recall@10 of the index against exact search on 20 test-gradient queries: $hits/200"

lm_size="${GRADSKETCH_LM_SIZE:-default}"
step "selection and attribution: SELECT, density sampling, In-Run Shapley, GradEx, PASER on Fashion-MNIST, then the same methods (and LESS) on a byte-level GPT trained here on Debian's text: corpus, base and expert models, LoGra sketches (LM size $lm_size; report in $work/report)"
rm -rf "$work/experiments" "$work/experiments-lm"
# --suite all: the Fashion-MNIST suite into experiments/ and report/, the LM suite (python3 -m gradsketch
# reproduce --suite lm, which calls this checkout's gradsketch) into experiments-lm/ and report/lm/, its
# section embedded in report/report.html. GRADSKETCH_FASHION_EXPERIMENTS picks a Fashion-MNIST subset
# (CI leaves PASER's ~5 minutes out: the LM suite runs PASER).
GRADSKETCH_CLI="$PWD/.build/release/gradsketch" .build/release/gradsketch-reproduce "$work/experiments" --out "$work/report" \
  --suite all --size "$lm_size" --only "${GRADSKETCH_FASHION_EXPERIMENTS:-select,density,inrun,gradex,paser}"
gs results list "$work/experiments"
gs verify "$work/experiments"
gs verify "$work/experiments-lm"
echo "tour: report at $work/report/report.html (the LM suite's own page: $work/report/lm/report.html)"
