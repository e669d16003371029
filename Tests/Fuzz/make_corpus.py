#!/usr/bin/env python3
"""Writes the checked-in fuzz corpus: seeds (valid inputs to start from) and the regression
inputs of issue 12 items 5 and 10, under Tests/Fuzz/corpus/<target>/.

Names say what must become of each input (Tests/GradSketchFuzzTests): seed-* and accept-*
are accepted, refuse-* are refused with an error, hostile-* only must not crash. Crashes the
fuzzer finds are copied in by hand as refuse-<what>.* next to these.

Usage: make_corpus.py [MANIFEST_SEED...]  (manifest seeds: JSON texts taken from real stores)
"""
import json, os, struct, sys
import numpy as np

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- .npy -------------------------------------------------------------------------------
def npy_bytes(array, version=(1, 0)):
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def npy_header(header_text, data=b"", major=1):
    """A .npy file with a hand-written header dictionary (numpy refuses to write these)."""
    text = header_text.encode("latin1")
    pad = (64 - (10 + len(text) + 1) % 64) % 64
    text += b" " * pad + b"\n"
    if major == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data
    return b"\x93NUMPY" + bytes([major, 0]) + struct.pack("<I", len(text)) + text + data


grid = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4
put("npy", "seed-f32-3x4.npy", npy_bytes(grid))
put("npy", "seed-f16-3x4-v2.npy", npy_bytes(grid.astype(np.float16), version=(2, 0)))
put("npy", "seed-f64-vector-v3.npy", npy_bytes(grid[0].astype(np.float64), version=(3, 0)))
put("npy", "seed-i64.npy", npy_bytes(np.arange(5, dtype=np.int64)))
put("npy", "seed-u8.npy", npy_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3)))
put("npy", "seed-scalar.npy", npy_bytes(np.float32(2.5)))
put("npy", "seed-empty-0x4.npy", npy_bytes(np.zeros((0, 4), dtype=np.float32)))
# Item 5: shape products that overflow 64 bits (Numpy.swift:52 trapped).
put("npy", "refuse-shape-product-overflow.npy",
    npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", b"\0" * 16))
put("npy", "refuse-shape-2p32-squared.npy",
    npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", b"\0" * 16))
put("npy", "refuse-shape-int-max.npy",
    npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807,), }", b"\0" * 8))
put("npy", "refuse-zero-rows-huge-width.npy",
    npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904), }"))
put("npy", "refuse-shape-beyond-int64.npy",
    npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }", b"\0" * 4))
put("npy", "refuse-negative-dimension.npy",
    npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }", b"\0" * 16))
put("npy", "refuse-v2-header-length-4gib.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr': '<f4'")
put("npy", "refuse-truncated-data.npy", npy_bytes(grid)[:-3])
put("npy", "refuse-trailing-data.npy", npy_bytes(grid) + b"xx")
put("npy", "refuse-header-without-shape.npy", npy_header("{'descr': '<f4', 'fortran_order': False, }"))
put("npy", "refuse-short.npy", b"\x93NUMPY\x01")


# --- .safetensors -----------------------------------------------------------------------
def safetensors(header, data=b"", declared=None):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    length = len(text) if declared is None else declared
    return struct.pack("<Q", length) + text + data


a = np.arange(6, dtype=np.float32).reshape(2, 3)
b = np.arange(4, dtype=np.float16)
put("safetensors", "seed-two-tensors.safetensors", safetensors({
    "__metadata__": {"format": "pt"},
    "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    "b": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
}, a.tobytes() + b.tobytes()))
put("safetensors", "seed-bf16-and-empty.safetensors", safetensors({
    "w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
    "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]},
}, b"\x80\x3f\x00\x40"))
# Item 5: a header length of 2^64 - 1 and of 2^63 (Int(UInt64) trapped), shape overflow.
put("safetensors", "refuse-header-length-all-ff.safetensors", b"\xff" * 8 + b"{}")
put("safetensors", "refuse-header-length-2p63.safetensors", struct.pack("<Q", 1 << 63) + b"{}")
put("safetensors", "refuse-header-length-past-end.safetensors", safetensors({}, declared=4096))
put("safetensors", "refuse-shape-product-overflow.safetensors", safetensors(
    {"x": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}, b"\0" * 16))
put("safetensors", "refuse-shape-2p32-squared-zero.safetensors", safetensors(
    {"x": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}}))
put("safetensors", "refuse-offsets-int-max.safetensors", safetensors(
    {"x": {"dtype": "U8", "shape": [1], "data_offsets": [9223372036854775806, 9223372036854775807]}}, b"\0"))
put("safetensors", "refuse-offsets-beyond-int64.safetensors", safetensors(
    {"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 18446744073709551615]}}, b"\0"))
put("safetensors", "refuse-overlap.safetensors", safetensors({
    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
}, b"\0" * 12))
put("safetensors", "refuse-fractional-shape.safetensors", safetensors(
    {"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}, b"\0" * 4))
put("safetensors", "refuse-not-json.safetensors", struct.pack("<Q", 8) + b"{oops!!}")
put("safetensors", "refuse-short.safetensors", b"\x08\0\0")
# JSON nested far deeper than any parser's stack: must be refused, not overflow the stack.
put("safetensors", "refuse-deep-nesting.safetensors", safetensors({}, declared=20000) [:8] + b"[" * 20000)

# --- text lines -------------------------------------------------------------------------
ids = [f"row-{i}" for i in range(5)]
put("lines", "seed-lf.txt", "\n".join(ids) + "\n")
put("lines", "seed-no-final-newline.txt", "\n".join(ids))
put("lines", "seed-utf8-labels.txt", "T-shirt/top\nPullover\nAnkle boot\n\u00e9t\u00e9\n\u6f22\u5b57\n")
# Item 10: CRLF (and lone CR) files: N entries, none keeping a \r.
put("lines", "accept-crlf-ids.txt", "\r\n".join(ids) + "\r\n")
put("lines", "accept-cr-ids.txt", "\r".join(ids) + "\r")
put("lines", "accept-mixed-endings.txt", "a\r\nb\nc\rd\r\n\r\ne")
put("lines", "accept-bom-crlf.txt", b"\xef\xbb\xbf" + ("\r\n".join(ids) + "\r\n").encode())
put("lines", "accept-empty-lines.txt", "\n\r\n\r")
put("lines", "refuse-invalid-utf8.txt", b"row-0\r\nrow-\xff\r\n")
put("lines", "refuse-truncated-utf8.txt", b"caf\xc3")
put("lines", "refuse-utf16.txt", "row-0\r\nrow-1\r\n".encode("utf-16"))

# --- manifests ---------------------------------------------------------------------------
for index, path in enumerate(sys.argv[1:]):
    text = open(path).read()
    put("manifest", f"seed-{index}.json", text)
    manifest = json.loads(text)
    newer = dict(manifest, format_version="9.0")
    put("manifest", f"refuse-newer-major-{index}.json", json.dumps(newer))
    other = dict(manifest, format="zarr")
    put("manifest", f"refuse-other-format-{index}.json", json.dumps(other))
    unknown = dict(manifest, extensions=[{"name": "x-unknown", "must_understand": True}])
    put("manifest", f"refuse-unknown-extension-{index}.json", json.dumps(unknown))
    for name, entry in manifest.get("sketch_sets", {}).items():
        # Item 6's hostile numbers. A set-level "rows" is a key the Spec does not define (it
        # must only not crash); k and a segment's rows near 2^63 are refused by the manifest
        # checks every reader runs (Spec §7.1).
        hostile = json.loads(text)
        hostile["sketch_sets"][name]["rows"] = 2**63 - 1
        put("manifest", f"hostile-rows-int-max-{index}.json", json.dumps(hostile))
        hostile = json.loads(text)
        hostile["sketch_sets"][name]["k"] = 2**63 - 1
        put("manifest", f"refuse-k-int-max-{index}.json", json.dumps(hostile))
        if entry.get("segments"):
            hostile = json.loads(text)
            hostile["sketch_sets"][name]["segments"][0]["rows"] = 2**63 - 1
            put("manifest", f"refuse-segment-rows-int-max-{index}.json", json.dumps(hostile))
        break
put("manifest", "refuse-not-json.json", "{\"format\": \"gradsketch\", ")
put("manifest", "refuse-empty.json", "")
put("manifest", "refuse-array.json", "[1, 2, 3]")
put("manifest", "refuse-deep-nesting.json", '{"format": "gradsketch", "sketch_sets": ' + "[" * 20000)
put("manifest", "refuse-version-beyond-int64.json", '{"format": "gradsketch", "version": 99999999999999999999999}')


# --- torch.save files (LESS imports) -----------------------------------------------------
def torch_bytes(value, **options):
    import io
    import torch
    buffer = io.BytesIO()
    torch.save(value, buffer, **options)
    return buffer.getvalue()


try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    torch.manual_seed(0)
    put("torch", "seed-tensor.pt", torch_bytes(torch.randn(3, 4)))
    put("torch", "seed-list-half-bf16.pt", torch_bytes([torch.randn(2, 3).half(), torch.randn(2, 3).bfloat16()]))
    put("torch", "seed-view-with-offset.pt", torch_bytes(torch.randn(6, 2)[2:4]))
    put("torch", "refuse-dict.pt", torch_bytes({"w": torch.randn(2)}))
    put("torch", "refuse-legacy-format.pt", torch_bytes(torch.randn(2, 2), _use_new_zipfile_serialization=False))
    put("torch", "refuse-transposed.pt", torch_bytes(torch.randn(2, 3).t()))
    put("torch", "refuse-int64.pt", torch_bytes(torch.arange(4)))
    whole = torch_bytes(torch.randn(3, 4))
    put("torch", "refuse-truncated.pt", whole[: len(whole) // 2])
