"""Reference reader and writer of the GradSketch store format 1.2, written from
Spec/format.md alone with numpy and h5py, as an independent check on the Swift engine.

It favours clarity over speed. Library use: create_store, append, delete, put_tensors,
delta, read_set, read_tensors, manifest, verify; format 1.1: read_index, build_index,
read_result, save_result; format 1.2: result addresses (read_result, resolve_result),
segments (a set's segment entries, from the manifest or its segment lists), id_hash;
sharded stores (§11a): read_shard_map, shard_path, read_sharded_set.
Names and ids are Python str, compared by code points, which for
UTF-8 text is the byte comparison §2.3 asks for (no Unicode normalisation). Command line:

  python3 gradsketch_ref.py verify STORE            exit 1 and print problems, if any
  python3 gradsketch_ref.py dump STORE OUT_DIR [--version N]
                                                    every set and tensor set as .npy/.json
  python3 gradsketch_ref.py crc32c FILE             CRC-32C of a file's bytes
"""
import datetime
import hashlib
import json
import os
import re
import secrets
import socket
import struct
import sys

import h5py
import numpy as np

FORMAT_MAJOR, FORMAT_MINOR = 1, 2
KNOWN_EXTENSIONS = {"segment-lists"}
NAME_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")

# ---- §4 checksums --------------------------------------------------------------------

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return np.array(table, dtype=np.uint32)

_TABLE = _crc_table()


def crc32c(data, crc=0):
    """CRC-32C of bytes, continuing from the finalized value `crc`."""
    c = (~crc) & 0xFFFFFFFF
    table = _TABLE
    for byte in memoryview(bytes(data)):
        c = int(table[(c ^ byte) & 0xFF]) ^ (c >> 8)
    return (~c) & 0xFFFFFFFF


def fmt(value):
    return f"crc32c:{value:08x}"


def checksum_numeric(array):
    return fmt(crc32c(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()))


def checksum_strings(strings):
    return fmt(crc32c(b"".join(s.encode("utf-8") + b"\0" for s in strings)))


# §4 block checksums (format 1.2): a CRC per block of elements, in `<dataset>-block-checksums`.
BLOCK_BYTES = 16384         # a block of fixed-width rows is about this many bytes
STRING_BLOCK_ELEMENTS = 256  # elements per block of a string dataset


def rows_per_block(row_bytes):
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def block_checksums_numeric(array, block_rows):
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
    n = data.shape[0] if data.ndim else 1
    return np.array([crc32c(data[b:b + block_rows].tobytes()) for b in range(0, n, block_rows)], dtype="<u4")


def block_checksums_strings(strings, block_rows):
    strings = list(strings)
    return np.array([crc32c(b"".join(s.encode("utf-8") + b"\0" for s in strings[b:b + block_rows]))
                     for b in range(0, len(strings), block_rows)], dtype="<u4")


def _write_block_checksums(f, name, crcs, block_rows):
    """Writes `<name>-block-checksums` (only in files of format 1.2 or later)."""
    if (FORMAT_MAJOR, FORMAT_MINOR) < (1, 2):
        return
    d = f.create_dataset(f"{name}-block-checksums", data=np.asarray(crcs, dtype="<u4"), dtype="<u4")
    _set_attr(d, "block-rows", int(block_rows))
    _mark(d, "block-checksums", checksum_numeric(np.asarray(crcs, dtype="<u4")))


def _check_block_checksums(f, name, values, path, strings=False):
    """If the file has block checksums for dataset `name`, checks them (and their own checksum)
    against `values`, the dataset's content; files without them (1.0, 1.1) pass."""
    key = f"{name}-block-checksums"
    if key not in f:
        return
    d = f[key]
    if _get_str(d, "encoding-type") != "block-checksums":
        raise ValueError(f"{path}:/{key} has encoding-type {_get_str(d, 'encoding-type')!r}")
    block_rows = int(d.attrs["block-rows"])
    if block_rows < 1:
        raise ValueError(f"{path}:/{key}: block-rows must be positive")
    crcs = np.asarray(d[()], dtype="<u4")
    if checksum_numeric(crcs) != _get_str(d, "checksum"):
        raise ValueError(f"{path}:/{key} checksum mismatch")
    expected = block_checksums_strings(values, block_rows) if strings else block_checksums_numeric(values, block_rows)
    if crcs.shape != expected.shape:
        raise ValueError(f"{path}:/{key} has {crcs.shape[0]} blocks, expected {expected.shape[0]}")
    bad = np.nonzero(crcs != expected)[0]
    if bad.size:
        raise ValueError(f"{path}:/{name} block {int(bad[0])} checksum mismatch")


def file_checksum(path):
    with open(path, "rb") as f:
        data = f.read()
    return len(data), fmt(crc32c(data))

# ---- §2 conventions ------------------------------------------------------------------

def _fixed_type(width):
    """Fixed-length NUL-padded UTF-8 string type of `width` bytes (§2.3)."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(max(1, width))
    tid.set_cset(h5py.h5t.CSET_UTF8)
    tid.set_strpad(h5py.h5t.STR_NULLPAD)
    return tid


def _encode(strings):
    encoded = [s.encode("utf-8") for s in strings]
    width = max([1] + [len(e) for e in encoded])
    return np.array(encoded, dtype=f"S{width}"), width


def _write_strings(group, name, strings, scalar=False):
    """A fixed-length UTF-8 string dataset; written through the low-level API because h5py
    will not convert numpy's ASCII strings to a UTF-8 file type itself."""
    data, width = _encode(strings)
    tid = _fixed_type(width)
    space = h5py.h5s.create(h5py.h5s.SCALAR) if scalar else h5py.h5s.create_simple((len(strings),))
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, lcpl=lcpl)
    if strings:
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data.reshape(()) if scalar else data, mtype=tid)
    return h5py.Dataset(dsid)


def _set_attr(obj, name, value):
    if isinstance(value, str):
        data, width = _encode([value])
        tid = _fixed_type(width)
        attr = h5py.h5a.create(obj.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
        attr.write(data.reshape(()), mtype=tid)
    else:
        obj.attrs.create(name, np.int64(value))


def _get_str(obj, name):
    value = obj.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).split(b"\0", 1)[0].decode("utf-8")
    return str(value)


def _root_attrs(f, encoding_type):
    for key, value in (("format", "gradsketch"), ("format-version", f"{FORMAT_MAJOR}.{FORMAT_MINOR}"),
                       ("encoding-type", encoding_type), ("encoding-version", "1.0"),
                       ("creator", "gradsketch_ref.py"), ("creator-version", "1.0"),
                       ("hdf5-version", h5py.version.hdf5_version)):
        _set_attr(f, key, value)


def _mark(dset, encoding_type, checksum):
    _set_attr(dset, "encoding-type", encoding_type)
    _set_attr(dset, "encoding-version", "1.0")
    _set_attr(dset, "checksum", checksum)


def _new_file(path):
    """An HDF5 file as §2.2/§2.4 ask: 1.8 format, 4096-byte alignment, no locking."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_alignment(4096, 4096)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V18)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_EXCL, fapl=fapl)
    return h5py.File(fid)


def _mappable(group, name, array):
    """A contiguous, unfiltered dataset with storage allocated at creation (§2.4)."""
    array = np.ascontiguousarray(array)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if array.size:
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    space = h5py.h5s.create_simple(array.shape) if array.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    type_id = h5py.h5t.py_create(array.dtype.newbyteorder("<"))
    dsid = h5py.h5d.create(group.id, name.encode(), type_id, space, dcpl=dcpl)
    dset = h5py.Dataset(dsid)
    if array.size:
        dset[...] = array
    return dset


def _check_version(text, what, where):
    major, minor = (int(x) for x in text.split("."))
    if major > FORMAT_MAJOR:
        raise ValueError(f"{where}: {what} {text} is newer than this reader ({FORMAT_MAJOR}.{FORMAT_MINOR})")


def _check_root(f, encoding_type, where):
    if _get_str(f, "format") != "gradsketch":
        raise ValueError(f"{where}: not a GradSketch file")
    _check_version(_get_str(f, "format-version"), "format-version", where)
    found = _get_str(f, "encoding-type")
    if found != encoding_type:
        raise ValueError(f"{where}: expected encoding-type {encoding_type}, found {found}")
    _check_version(_get_str(f, "encoding-version"), "encoding-version", where)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(store, tmp, relative):
    size, checksum = file_checksum(tmp)
    _fsync(tmp)
    os.rename(tmp, os.path.join(store, relative))
    _fsync(os.path.join(store, os.path.dirname(relative)))
    return size, checksum


def _tmp(store):
    return os.path.join(store, "tmp", f"ref.{os.getpid()}.{secrets.token_hex(16)}.h5")

# ---- §7 versions ----------------------------------------------------------------------

def versions(store):
    names = os.listdir(os.path.join(store, "versions"))
    return sorted(int(n[1:13]) for n in names if re.fullmatch(r"v\d{12}\.h5", n))


def manifest(store, version=None):
    if version is None:
        version = versions(store)[-1]
    path = os.path.join(store, "versions", f"v{version:012d}.h5")
    if not os.path.exists(path):
        raise KeyError(f"version {version} is not retained (retained: {versions(store)})")
    with h5py.File(path, "r") as f:
        _check_root(f, "manifest", path)
        dset = f["manifest"]
        raw = dset[()]
        text = raw.split(b"\0", 1)[0].decode("utf-8") if isinstance(raw, (bytes, np.bytes_)) else str(raw)
        if checksum_strings([text]) != _get_str(dset, "checksum"):
            raise ValueError(f"{path}: manifest checksum mismatch")
    m = json.loads(text)
    if m["version"] != version:
        raise ValueError(f"{path}: manifest says version {m['version']}")
    _check_version(m["format_version"], "format_version", path)
    for ext in m.get("extensions", []):
        if ext.get("must_understand") and ext["name"] not in KNOWN_EXTENSIONS:
            raise ValueError(f"{path}: unknown extension {ext['name']} must be understood")
    listed = [s for s in m.get("sketch_sets", {}).values() if "segment_lists" in s]
    if listed and not any(e["name"] == "segment-lists" for e in m.get("extensions", [])):
        raise ValueError(f"{path}: sets use segment_lists but the extension segment-lists is not declared")
    for s in listed:
        s["segments"] = _read_segment_lists(store, s["segment_lists"])
    return m


# ---- §5.1, §7.1 format 1.2: id hashes and segment lists ------------------------------

def id_hash(ident):
    """64-bit FNV-1a of the id's UTF-8 bytes, as the int64 with the same bits (§5.2)."""
    h = 0xCBF29CE484222325
    for byte in ident.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= (1 << 63) else h


def _hash_table(ids, offset=0):
    """(hashes, positions): the ids' hashes ascending as int64, ties by position."""
    pairs = sorted((id_hash(i), offset + n) for n, i in enumerate(ids))
    return (np.array([p[0] for p in pairs], dtype="<i8"), np.array([p[1] for p in pairs], dtype="<i8"))


def _read_int64(f, name, encoding_type, expected, count, where):
    d = f[name]
    if _get_str(d, "encoding-type") != encoding_type:
        raise ValueError(f"{where}:/{name}: encoding-type {_get_str(d, 'encoding-type')}, expected {encoding_type}")
    values = d[()]
    if values.dtype != np.dtype("<i8") or values.shape != (count,):
        raise ValueError(f"{where}:/{name}: expected int64 [{count}], found {values.dtype} {values.shape}")
    if checksum_numeric(values) != expected or _get_str(d, "checksum") != expected:
        raise ValueError(f"{where}:/{name}: checksum mismatch")
    return values


def _read_segment_lists(store, lists):
    segments = []
    for lst in lists:
        path = os.path.join(store, lst["file"])
        if not re.fullmatch(r"segment-lists/[0-9a-f]{32}\.h5", lst["file"]):
            raise ValueError(f"segment list file name {lst['file']!r} is not segment-lists/<id>.h5")
        with h5py.File(path, "r") as f:
            _check_root(f, "segment-list", path)
            d = f["entries"]
            if _get_str(d, "encoding-type") != "segment-list-json":
                raise ValueError(f"{path}:/entries: wrong encoding-type")
            raw = d[()]
            text = raw.split(b"\0", 1)[0].decode("utf-8") if isinstance(raw, (bytes, np.bytes_)) else str(raw)
        if checksum_strings([text]) != lst["checksums"]["entries"]:
            raise ValueError(f"{path}:/entries checksum mismatch")
        entries = json.loads(text)
        if len(entries) != lst["count"] or sum(e["rows"] for e in entries) != lst["rows"]:
            raise ValueError(f"{path}: holds {len(entries)} segments, the manifest says {lst['count']}")
        segments += entries
    return segments


def segments(store, set_entry):
    """A set's segment entries in order (inline, or from its segment lists already expanded)."""
    return set_entry["segments"]


def _write_id_hashes(f, names, ids, offset=0, position_type="row-id-hash-rows"):
    hashes, positions = _hash_table(ids, offset)
    checksums = {}
    for name, values, kind in ((names[0], hashes, "row-id-hashes"), (names[1], positions, position_type)):
        dset = f.create_dataset(name, data=values)
        checksums[name] = checksum_numeric(values)
        _mark(dset, kind, checksums[name])
    return checksums


def _write_segment_list(store, set_name, entries):
    """One segment-list file (§7.1) holding `entries` and their rows' id hash table."""
    ids = []
    for seg in entries:
        ids += _segment_ids(store, seg)
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    tmp = _tmp(store)
    with _new_file(tmp) as f:
        _root_attrs(f, "segment-list")
        _set_attr(f, "set", set_name)
        _set_attr(f, "count", len(entries))
        _set_attr(f, "rows", len(ids))
        dset = _write_strings(f, "entries", [text], scalar=True)
        checksums = {"entries": checksum_strings([text])}
        _mark(dset, "segment-list-json", checksums["entries"])
        checksums.update(_write_id_hashes(f, ("id-hashes", "id-hash-positions"), ids, position_type="segment-list-positions"))
    relative = f"segment-lists/{secrets.token_hex(16)}.h5"
    os.makedirs(os.path.join(store, "segment-lists"), exist_ok=True)
    size, whole = _publish(store, tmp, relative)
    return {"file": relative, "count": len(entries), "rows": len(ids), "size": size, "file_checksum": whole,
            "checksums": checksums}


LIST_ENTRIES = 50  # any cut is valid (§7.1); deliberately not the engine's 64


def _store_in_lists(store, m, parent):
    """Writes each set's segments as segment lists, reusing the parent's list files whose
    entries are unchanged; returns the files written."""
    written = []
    old_lists = {}
    if parent is not None:
        for name, s in parent["sketch_sets"].items():
            start = 0
            for lst in s.get("segment_lists") or []:
                old_lists[(name, json.dumps(s["segments"][start:start + lst["count"]], sort_keys=True))] = lst
                start += lst["count"]
    for name, s in m["sketch_sets"].items():
        lists = []
        entries = s.pop("segments")
        for start in range(0, len(entries), LIST_ENTRIES):
            chunk = entries[start:start + LIST_ENTRIES]
            lst = old_lists.get((name, json.dumps(chunk, sort_keys=True)))
            if lst is None:
                lst = _write_segment_list(store, name, chunk)
                written.append(lst["file"])
            lists.append(lst)
        s["segment_lists"] = lists
    m["extensions"] = [e for e in m.get("extensions", []) if e["name"] != "segment-lists"]
    if m["sketch_sets"]:
        m["extensions"].append({"name": "segment-lists", "must_understand": True})
    return written


def _commit(store, operation, set_name, change, detail=None):
    """§7.2 steps 2–3: rebuild N+1 from the latest N, link it, retry if another writer won."""
    while True:
        base = versions(store)
        parent = base[-1] if base else None
        parent_manifest = manifest(store, parent) if base else None
        m = json.loads(json.dumps(parent_manifest)) if base else {"tensor_sets": {}, "sketch_sets": {}}
        added, deleted = change(m)
        written = _store_in_lists(store, m, parent_manifest)
        version = 0 if parent is None else parent + 1
        m.update({"format": "gradsketch", "format_version": f"{FORMAT_MAJOR}.{FORMAT_MINOR}", "version": version,
                  "parent": parent, "created": _now(), "creator": "gradsketch_ref.py", "creator_version": "1.0",
                  "extensions": m.get("extensions", []),
                  "change": {"operation": operation, "set": set_name, "rows_added": added, "rows_deleted": deleted,
                             "writer": f"{socket.gethostname()}:{os.getpid()}", "detail": detail}})
        text = json.dumps(m, sort_keys=True, separators=(",", ":"))
        tmp = _tmp(store)
        with _new_file(tmp) as f:
            _root_attrs(f, "manifest")
            _set_attr(f, "version", version)
            dset = _write_strings(f, "manifest", [text], scalar=True)
            _mark(dset, "manifest-json", checksum_strings([text]))
        _fsync(tmp)
        try:
            os.link(tmp, os.path.join(store, "versions", f"v{version:012d}.h5"))
        except FileExistsError:
            os.unlink(tmp)
            for name in written:
                os.unlink(os.path.join(store, name))
            continue
        os.unlink(tmp)
        _fsync(os.path.join(store, "versions"))
        return version


def create_store(store):
    os.makedirs(store)
    for d in ("versions", "segments", "tensors", "deletions", "indexes", "results", "segment-lists", "tmp"):
        os.makedirs(os.path.join(store, d))
    tmp = _tmp(store)
    with _new_file(tmp) as f:
        _root_attrs(f, "store")
        _set_attr(f, "store-id", secrets.token_hex(16))
        _set_attr(f, "created", _now())
    _fsync(tmp)
    os.rename(tmp, os.path.join(store, "gradsketch.h5"))
    _fsync(store)
    return _commit(store, "init", None, lambda m: (0, 0))

# ---- §5 sketch sets -------------------------------------------------------------------

def _segment_ids(store, seg):
    with h5py.File(os.path.join(store, seg["file"]), "r") as f:
        ids = [s.decode("utf-8") if isinstance(s, bytes) else s for s in f["ids"].asstr()[()]]
    if checksum_strings(ids) != seg["checksums"]["ids"]:
        raise ValueError(f"{seg['file']}: ids checksum mismatch")
    return ids


def _deleted(store, seg):
    d = seg.get("deletions")
    if not d:
        return np.zeros(0, dtype=np.int64)
    path = os.path.join(store, d["file"])
    with h5py.File(path, "r") as f:
        _check_root(f, "row-deletions", path)
        rows = f["rows"][()]
    if checksum_numeric(rows) != d["checksum"]:
        raise ValueError(f"{d['file']}: deletion list checksum mismatch")
    return rows


def _live_ids(store, entry):
    live = set()
    for seg in entry["segments"]:
        ids = _segment_ids(store, seg)
        gone = set(_deleted(store, seg).tolist())
        live.update(i for n, i in enumerate(ids) if n not in gone)
    return live


def append(store, set_name, rows, ids=None, labels=None, metadata=None, metadata_kind=None, columns=None,
           attributes=None, allow_nonfinite=False, dtype=None):
    if not NAME_RULE.match(set_name):
        raise ValueError(f"invalid set name {set_name!r}")
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] < 1:
        raise ValueError(f"rows must be [N, k], found {rows.shape}")
    current = manifest(store)["sketch_sets"].get(set_name)
    dtype = np.dtype(current["dtype"] if current else (dtype or ("float16" if rows.dtype == np.float16 else "float32")))
    allow = current["allow_nonfinite"] if current else allow_nonfinite
    stored = (rows.astype(np.float32) if rows.dtype == np.float64 else rows).astype(dtype)
    if not allow and not np.isfinite(stored).all():
        raise ValueError(f"row {int(np.argwhere(~np.isfinite(stored))[0][0])} is not finite")
    n, k = stored.shape
    seg_id = secrets.token_hex(16)
    ids = list(ids) if ids is not None else [f"{seg_id}:{i}" for i in range(n)]
    if len(ids) != n or len(set(ids)) != n:
        raise ValueError("ids must be unique, one per row")
    tmp = _tmp(store)
    checksums = {}
    with _new_file(tmp) as f:
        _root_attrs(f, "sketch-segment")
        _set_attr(f, "segment-id", seg_id)
        _set_attr(f, "rows", n)
        _set_attr(f, "k", k)
        _set_attr(f, "dtype", dtype.name)
        dset = _mappable(f, "rows", stored)
        checksums["rows"] = checksum_numeric(stored)
        _mark(dset, "dense-rows", checksums["rows"])
        block_rows = rows_per_block(k * dtype.itemsize)
        _write_block_checksums(f, "rows", block_checksums_numeric(stored, block_rows), block_rows)
        for name, values, kind in (("ids", ids, "row-ids"), ("labels", labels, "row-labels"),
                                   ("metadata", metadata, "row-metadata")):
            if values is None:
                continue
            values = list(values)
            assert len(values) == n, f"{name} must have one entry per row"
            dset = _write_strings(f, name, values)
            checksums[name] = checksum_strings(values)
            _mark(dset, kind, checksums[name])
            _write_block_checksums(f, name, block_checksums_strings(values, STRING_BLOCK_ELEMENTS), STRING_BLOCK_ELEMENTS)
            if name == "metadata":
                _set_attr(dset, "metadata-kind", metadata_kind or "text")
        checksums.update(_write_id_hashes(f, ("id-hashes", "id-hash-rows"), ids))
        for name, values in sorted((columns or {}).items()):
            values = np.asarray(values, dtype="<f8")
            dset = f.create_dataset(f"columns/{name}", data=values)
            checksums[f"columns/{name}"] = checksum_numeric(values)
            _mark(dset, "row-column", checksums[f"columns/{name}"])
    relative = f"segments/{seg_id}.h5"
    size, whole = _publish(store, tmp, relative)
    entry = {"file": relative, "rows": n, "size": size, "file_checksum": whole, "checksums": checksums,
             "metadata_kind": (metadata_kind or "text") if metadata is not None else None, "deletions": None}

    def change(m):
        s = m["sketch_sets"].get(set_name)
        if s is None:
            _check_checkpoint_exists(set_name, attributes or {}, m)
            m["sketch_sets"][set_name] = {"k": k, "dtype": dtype.name, "allow_nonfinite": allow,
                                          "attributes": attributes or {}, "segments": [entry]}
        else:
            if s["k"] != k or s["dtype"] != dtype.name:
                raise ValueError("k or dtype differs from the set's")
            _check_same_origin(set_name, attributes or {}, s["attributes"])
            if _live_ids(store, s) & set(ids):
                raise ValueError("an id is already in the set")
            s["segments"].append(entry)
        return n, 0
    return _commit(store, "append", set_name, change)


def _same_projection(a, b, top=True):
    """Spec/projection.md §5: equal JSON values, numbers by value, `version` by MAJOR only."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return False
        for key in a:
            if top and key == "version" and isinstance(a[key], str) and isinstance(b[key], str):
                if a[key].split(".")[0] != b[key].split(".")[0]:
                    return False
            elif not _same_projection(a[key], b[key], top=False):
                return False
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_projection(x, y, top=False) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _check_same_origin(set_name, stated, recorded):
    """§7.1: an append to an existing set states no projection or checkpoint, or the set's."""
    if "projection" in stated and stated["projection"] is not None:
        if "projection" not in recorded or not _same_projection(stated["projection"], recorded["projection"]):
            raise ValueError(f"set {set_name} was sketched with a different projection")
    mine, theirs = stated.get("tensor_set_hash"), recorded.get("tensor_set_hash")
    if mine is not None and theirs is not None:
        differs = mine != theirs
    else:
        differs = stated.get("tensor_set") is not None and recorded.get("tensor_set") is not None \
            and stated["tensor_set"] != recorded["tensor_set"]
    if differs:
        raise ValueError(f"set {set_name} holds gradients at another checkpoint")


def _check_checkpoint_exists(set_name, attributes, m):
    """§7.1: a new set stating tensor_set and tensor_set_hash names a tensor set of that content."""
    name, digest = attributes.get("tensor_set"), attributes.get("tensor_set_hash")
    if isinstance(name, str) and isinstance(digest, str):
        entry = m["tensor_sets"].get(name)
        if entry is None or entry["content_hash"] != digest:
            raise ValueError(f"set {set_name} states checkpoint {name} ({digest}), which version {m.get('version')} does not hold")


def delete(store, set_name, ids):
    wanted = set(ids)

    def change(m):
        s = m["sketch_sets"][set_name]
        found = 0
        for seg in s["segments"]:
            seg_ids = _segment_ids(store, seg)
            gone = set(_deleted(store, seg).tolist())
            new = {n for n, i in enumerate(seg_ids) if i in wanted and n not in gone}
            if not new:
                continue
            found += len(new)
            rows = np.array(sorted(gone | new), dtype="<i8")
            tmp = _tmp(store)
            del_id = secrets.token_hex(16)
            with _new_file(tmp) as f:
                _root_attrs(f, "row-deletions")
                _set_attr(f, "segment", os.path.basename(seg["file"])[:-3])
                dset = f.create_dataset("rows", data=rows)
                _mark(dset, "deleted-rows", checksum_numeric(rows))
            relative = f"deletions/{del_id}.h5"
            size, whole = _publish(store, tmp, relative)
            seg["deletions"] = {"file": relative, "count": len(rows), "checksum": checksum_numeric(rows),
                                "size": size, "file_checksum": whole}
        if found != len(wanted):
            raise KeyError("some ids are not live rows of the set")
        return 0, found
    return _commit(store, "delete", set_name, change)


def read_set(store, name, version=None):
    """Live rows, ids, labels, metadata and columns of a set, every checksum verified."""
    m = manifest(store, version)
    s = m["sketch_sets"][name]
    column_names = sorted({c[8:] for seg in s["segments"] for c in seg["checksums"] if c.startswith("columns/")})
    rows, ids, labels, metadata = [], [], [], []
    columns = {c: [] for c in column_names}
    for seg in s["segments"]:
        path = os.path.join(store, seg["file"])
        with h5py.File(path, "r") as f:
            _check_root(f, "sketch-segment", path)
            data = f["rows"][()]
            if checksum_numeric(data) != seg["checksums"]["rows"]:
                raise ValueError(f"{path}:/rows checksum mismatch")
            _check_block_checksums(f, "rows", data, path)
            keep = np.ones(seg["rows"], dtype=bool)
            keep[_deleted(store, seg)] = False
            rows.append(data[keep])
            strings = {}
            for name_ in ("ids", "labels", "metadata"):
                if name_ in seg["checksums"]:
                    values = list(f[name_].asstr()[()])
                    if checksum_strings(values) != seg["checksums"][name_]:
                        raise ValueError(f"{path}:/{name_} checksum mismatch")
                    _check_block_checksums(f, name_, values, path, strings=True)
                    strings[name_] = values
                else:
                    strings[name_] = [""] * seg["rows"]
            ids += [v for v, k in zip(strings["ids"], keep) if k]
            labels += [v for v, k in zip(strings["labels"], keep) if k]
            metadata += [v for v, k in zip(strings["metadata"], keep) if k]
            for c in column_names:
                key = f"columns/{c}"
                if key in seg["checksums"]:
                    values = f[key][()]
                    if checksum_numeric(values) != seg["checksums"][key]:
                        raise ValueError(f"{path}:/{key} checksum mismatch")
                else:
                    values = np.full(seg["rows"], np.nan)
                columns[c].append(values[keep])
    k = s["k"]
    matrix = np.concatenate(rows) if rows else np.zeros((0, k), dtype=s["dtype"])
    return matrix, ids, labels, metadata, {c: np.concatenate(v) for c, v in columns.items()}

# ---- §11a sharded stores --------------------------------------------------------------

SHARD_MAP_FILE = "gradsketch-shards.json"
STORE_ID_RULE = re.compile(r"[0-9a-f]{32}\Z")


def read_shard_map(map_dir):
    """The validated shard map of a sharded store: its list of shard objects, in index order."""
    path = os.path.join(map_dir, SHARD_MAP_FILE)
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    if not isinstance(m, dict) or m.get("format") != "gradsketch-shards":
        raise ValueError(f"{path}: not a shard map (format {m.get('format') if isinstance(m, dict) else None!r})")
    version = m.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: version must be an integer >= 1, found {version!r}")
    if version > 1:
        raise ValueError(f"{path}: map version {version} is newer than this reader (1)")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"{path}: expected a non-empty shards array")
    names, ids = set(), set()
    for i, s in enumerate(shards):
        if not isinstance(s, dict):
            raise ValueError(f"{path}: shards[{i}] is not an object")
        for key in ("name", "path", "store_id"):
            if not isinstance(s.get(key), str):
                raise ValueError(f"{path}: shards[{i}].{key} must be a string")
        if "host" not in s or not (s["host"] is None or (isinstance(s["host"], str) and s["host"])):
            raise ValueError(f"{path}: shards[{i}].host must be null or a non-empty string")
        if not NAME_RULE.match(s["name"]) or s["name"] in names:
            raise ValueError(f"{path}: shards[{i}].name {s['name']!r} breaks the name rule or is not unique")
        if not s["path"]:
            raise ValueError(f"{path}: shards[{i}].path is empty")
        if not STORE_ID_RULE.match(s["store_id"]) or s["store_id"] in ids:
            raise ValueError(f"{path}: shards[{i}].store_id {s['store_id']!r} is not 32 lowercase hex digits or not unique")
        names.add(s["name"])
        ids.add(s["store_id"])
    return shards


def shard_path(map_dir, shard):
    """A shard's directory: absolute as given, relative joined to the map directory."""
    return shard["path"] if shard["path"].startswith("/") else map_dir.rstrip("/") + "/" + shard["path"]


def read_sharded_set(map_dir, name, host=None, versions=None):
    """Set `name` of every shard a process on `host` serves (host null, or equal), each shard's
    store-id checked and k, dtype and projection compared across shards (§11a.4). Returns
    [(shard_index, shard_name, rows, ids, labels, metadata, columns)] in shard order, one entry
    per shard holding the set; rows are in the shard's set order (segment, row)."""
    out, first = [], None
    for i, s in enumerate(read_shard_map(map_dir)):
        if s["host"] is not None and s["host"] != host:
            continue
        store = shard_path(map_dir, s)
        with h5py.File(os.path.join(store, "gradsketch.h5"), "r") as f:
            found = _get_str(f, "store-id")
        if found != s["store_id"]:
            raise ValueError(f"shard {s['name']} at {store} is store {found}, the map expects {s['store_id']}")
        version = (versions or {}).get(i)
        m = manifest(store, version)
        if name not in m["sketch_sets"]:
            continue
        entry = m["sketch_sets"][name]
        shape = (entry["k"], entry["dtype"], entry["attributes"].get("projection"))
        if first is None:
            first = (s["name"], shape)
        else:
            other, (k, dtype, projection) = first
            if (entry["k"], entry["dtype"]) != (k, dtype):
                raise ValueError(f"set {name}: shard {s['name']} has k={entry['k']} {entry['dtype']}, shard {other} k={k} {dtype}")
            if (projection is None) != (shape[2] is None) or (projection is not None and not _same_projection(shape[2], projection)):
                raise ValueError(f"set {name}: shard {s['name']} has another projection than shard {other}")
        rows, ids, labels, metadata, columns = read_set(store, name, version)
        out.append((i, s["name"], rows, ids, labels, metadata, columns))
    return out


# ---- §6 tensor sets -------------------------------------------------------------------

def _escape(name):
    return "%2E" if name == "." else name.replace("%", "%25").replace("/", "%2F")


def content_hash(tensors):
    h = hashlib.sha256()
    for name in sorted(tensors, key=lambda s: s.encode("utf-8")):
        # ascontiguousarray makes a 0-d array 1-d; the hash covers the tensor's own shape.
        v = np.ascontiguousarray(tensors[name]).reshape(np.shape(tensors[name]))
        data = v.astype(v.dtype.newbyteorder("<")).tobytes()
        h.update(name.encode() + b"\0" + v.dtype.name.encode() + b"\0" + struct.pack("<Q", v.ndim)
                 + b"".join(struct.pack("<Q", d) for d in v.shape) + struct.pack("<Q", len(data)) + data)
    return "sha256:" + h.hexdigest()


def _write_tensors(store, kind, tensors, extra):
    tmp = _tmp(store)
    entries = []
    with _new_file(tmp) as f:
        _root_attrs(f, "tensor-set")
        _set_attr(f, "kind", kind)
        _set_attr(f, "content-hash", content_hash(tensors))
        for key, value in extra.items():
            _set_attr(f, key, value)
        group = f.create_group("tensors")
        for name in sorted(tensors, key=lambda s: s.encode("utf-8")):
            v = tensors[name]
            dset = _mappable(group, _escape(name), v)
            _mark(dset, "tensor", checksum_numeric(v))
            _set_attr(dset, "name", name)
            entries.append({"name": name, "dtype": v.dtype.name, "shape": list(v.shape),
                            "checksum": checksum_numeric(v), "source_dtype": None})
    relative = f"tensors/{secrets.token_hex(16)}.h5"
    size, whole = _publish(store, tmp, relative)
    return {"file": relative, "size": size, "file_checksum": whole, "kind": kind,
            "content_hash": content_hash(tensors), "from": None, "to": None, "tensors": entries}


def put_tensors(store, name, tensors, kind="weights"):
    tensors = {n: (np.asarray(v, dtype=np.float32) if np.asarray(v).dtype != np.float16 else np.asarray(v))
               for n, v in tensors.items()}
    entry = _write_tensors(store, kind, tensors, {})

    def change(m):
        assert name not in m["tensor_sets"], "tensor set exists"
        m["tensor_sets"][name] = entry
        return 0, 0
    return _commit(store, "put-tensors", name, change)


def read_tensors(store, name, version=None):
    m = manifest(store, version)
    entry = m["tensor_sets"][name]
    path = os.path.join(store, entry["file"])
    out = {}
    with h5py.File(path, "r") as f:
        _check_root(f, "tensor-set", path)
        for t in entry["tensors"]:
            v = f["tensors"][_escape(t["name"])][()]
            if checksum_numeric(np.asarray(v)) != t["checksum"]:
                raise ValueError(f"{path}: tensor {t['name']} checksum mismatch")
            out[t["name"]] = np.asarray(v)
    if content_hash(out) != entry["content_hash"]:
        raise ValueError(f"{path}: content hash mismatch")
    return out


def delta(store, name, from_set, to_set):
    a, b = read_tensors(store, from_set), read_tensors(store, to_set)
    if sorted(a) != sorted(b) or any(a[n].shape != b[n].shape for n in a):
        raise ValueError("tensor names or shapes differ")
    diff = {n: b[n].astype(np.float32) - a[n].astype(np.float32) for n in a}
    m = manifest(store)
    entry = _write_tensors(store, "delta", diff, {"from-hash": m["tensor_sets"][from_set]["content_hash"],
                                                 "to-hash": m["tensor_sets"][to_set]["content_hash"]})
    entry["from"], entry["to"] = from_set, to_set

    def change(m):
        m["tensor_sets"][name] = entry
        return 0, 0
    return _commit(store, "delta", name, change)

# ---- §10 search indexes and §11 saved results (format 1.1) ------------------------------

def _get_int(obj, name, where):
    """An integer attribute; §10 and §11 write them as int64 scalars."""
    value = obj.attrs.get(name)
    if value is None or np.ndim(value) != 0 or not np.issubdtype(np.asarray(value).dtype, np.integer):
        raise ValueError(f"{where}: attribute {name} must be an integer scalar, found {value!r}")
    return int(value)


def _checked_dataset(f, name, encoding_type, expected, dtype, shape, where):
    """The values of dataset `name` after checking its §2.1 attributes, type, shape and the
    manifest's checksum (§4)."""
    if name not in f:
        raise ValueError(f"{where}: dataset {name} is missing")
    d = f[name]
    if _get_str(d, "encoding-type") != encoding_type:
        raise ValueError(f"{where}:/{name}: expected encoding-type {encoding_type}, found {_get_str(d, 'encoding-type')}")
    _check_version(_get_str(d, "encoding-version"), "encoding-version", f"{where}:/{name}")
    if d.shape != tuple(shape):
        raise ValueError(f"{where}:/{name}: expected shape {tuple(shape)}, found {d.shape}")
    if dtype == "string":
        values = [v for v in d.asstr()[()]] if d.shape[0] else []
        computed = checksum_strings(values)
    else:
        if d.dtype != np.dtype(dtype):
            raise ValueError(f"{where}:/{name}: expected {np.dtype(dtype)}, found {d.dtype}")
        values = d[()]
        computed = checksum_numeric(values)
    if computed != expected or computed != _get_str(d, "checksum"):
        raise ValueError(f"{where}:/{name}: checksum {computed}, manifest says {expected}, "
                         f"attribute says {_get_str(d, 'checksum')}")
    return values


def _physical_rows(store, segments):
    """Every row (deleted ones included) of `segments` in set order, widened to float32,
    with the segment files' rows checksums verified: the rows §10's positions index."""
    parts = []
    for seg in segments:
        path = os.path.join(store, seg["file"])
        with h5py.File(path, "r") as f:
            data = f["rows"][()]
        if checksum_numeric(data) != seg["checksums"]["rows"]:
            raise ValueError(f"{path}:/rows checksum mismatch")
        parts.append(data.astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _live_physical(store, segments):
    """Physical positions (§10.2) of the rows of `segments` that the entries' deletion lists
    leave live."""
    live, base = [], 0
    for seg in segments:
        gone = set(_deleted(store, seg).tolist())
        live += [base + r for r in range(seg["rows"]) if r not in gone]
        base += seg["rows"]
    return live


def _unit(x):
    """Rows divided by their Euclidean norm (rows of norm 0 stay 0), §10.2 for cosine."""
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0).astype(np.float32)


def read_index(store, set_name, name, version=None):
    """Index `name` of `set_name`, every rule of §10 checked: the entry, the file's attributes
    and datasets, list offsets, positions, the covered-prefix rule, that each row's code
    reconstructs its row within scale/2 per component, and, when `built_on_version` is still
    retained, that the index holds exactly the rows live in it. Raises ValueError on a stale
    or inconsistent index."""
    m = manifest(store, version)
    s = m["sketch_sets"][set_name]
    entry = s.get("indexes", {})[name]
    for key, kind in (("file", str), ("kind", str), ("metric", str), ("lists", int), ("rows", int),
                      ("built_on_version", int), ("segments", list), ("checksums", dict), ("parameters", dict),
                      ("size", int), ("file_checksum", str)):
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            raise ValueError(f"index {name}: manifest key {key} must be a {kind.__name__}, found {entry.get(key)!r}")
    if not re.fullmatch(r"indexes/[0-9a-f]{32}\.h5", entry["file"]):
        raise ValueError(f"index {name}: file {entry['file']} is not indexes/<32 hex>.h5")
    files = [seg["file"] for seg in s["segments"]]
    covered = entry["segments"]
    if files[:len(covered)] != covered:
        raise ValueError(f"index {name} is stale: the set no longer starts with its {len(covered)} segments")
    if entry["kind"] != "ivf-int8" or entry["metric"] not in ("ip", "cosine"):
        raise ValueError(f"index {name}: unknown kind {entry['kind']} or metric {entry['metric']}")
    k, L, n = s["k"], entry["lists"], entry["rows"]
    path = os.path.join(store, entry["file"])
    with h5py.File(path, "r") as f:
        _check_root(f, "ivf-index", path)
        expected_attrs = {"index-id": os.path.basename(entry["file"])[:-3], "set": set_name,
                          "metric": entry["metric"], "kind": entry["kind"]}
        for key, value in expected_attrs.items():
            if _get_str(f, key) != value:
                raise ValueError(f"{path}: attribute {key} is {_get_str(f, key)!r}, expected {value!r}")
        for key, value in (("k", k), ("lists", L), ("rows", n), ("built-on-version", entry["built_on_version"])):
            if _get_int(f, key, path) != value:
                raise ValueError(f"{path}: attribute {key} is {_get_int(f, key, path)}, expected {value}")
        sums = entry["checksums"]
        centroids = _checked_dataset(f, "centroids", "ivf-centroids", sums["centroids"], "<f4", (L, k), path)
        offsets = _checked_dataset(f, "list-offsets", "ivf-list-offsets", sums["list-offsets"], "<i8", (L + 1,), path)
        codes = _checked_dataset(f, "codes", "ivf-codes", sums["codes"], "i1", (n, k), path)
        scales = _checked_dataset(f, "code-scales", "ivf-code-scales", sums["code-scales"], "<f4", (n,), path)
        positions = _checked_dataset(f, "positions", "ivf-row-positions", sums["positions"], "<i8", (n,), path)
        for name_, values in (("codes", codes), ("code-scales", scales), ("positions", positions)):
            _check_block_checksums(f, name_, values, path)
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise ValueError(f"{path}: list offsets must rise from 0 to {n}")
    covered_entries = s["segments"][:len(covered)]
    physical = sum(seg["rows"] for seg in covered_entries)
    if len(set(positions.tolist())) != n or (positions < 0).any() or (positions >= physical).any():
        raise ValueError(f"{path}: positions must be distinct and within the {physical} covered rows")
    if (codes < -127).any():
        raise ValueError(f"{path}: a code is -128, outside [-127, 127]")
    x = _physical_rows(store, covered_entries)[positions]
    if entry["metric"] == "cosine":
        x = _unit(x)
    lists = np.repeat(np.arange(L), np.diff(offsets))
    c = centroids[lists].astype(np.float64)
    r = x.astype(np.float64) - c
    slack = 1e-5 * (np.abs(x).max(axis=1) + np.abs(c).max(axis=1)) + 1e-6 * scales
    error = np.abs(r - scales[:, None].astype(np.float64) * codes).max(axis=1)
    if (error > scales / 2 + slack).any():
        bad = int(np.argmax(error - scales / 2 - slack))
        raise ValueError(f"{path}: index row {bad} decodes {error[bad]} from its row, more than scale/2 = {scales[bad] / 2}")
    if (np.abs(scales * 127.0 - np.abs(r).max(axis=1)) > slack * 127).any():
        raise ValueError(f"{path}: a code scale is not max|r|/127")
    membership = entry["built_on_version"] in versions(store)
    if membership:
        then = manifest(store, entry["built_on_version"])["sketch_sets"][set_name]["segments"][:len(covered)]
        if [seg["file"] for seg in then] != covered:
            raise ValueError(f"index {name}: version {entry['built_on_version']} does not start with the covered segments")
        if sorted(positions.tolist()) != _live_physical(store, then):
            raise ValueError(f"index {name}: holds other rows than those live in version {entry['built_on_version']}")
    return {"entry": entry, "centroids": centroids, "offsets": offsets, "codes": codes, "scales": scales,
            "positions": positions, "membership_checked": membership}


def probe_one_list(store, set_name, name, query, count, version=None):
    """Ids of the exact top `count` rows (ties by position) among the live rows of the one
    list of index `name` whose centroid has the largest inner product with the query, plus
    the live rows of the segments after the covered ones: what §10.2's search returns with
    nprobe = 1 and a rerank that keeps every candidate."""
    m = manifest(store, version)
    s = m["sketch_sets"][set_name]
    index = read_index(store, set_name, name, version)
    metric = index["entry"]["metric"]
    q = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q)
    best = int(np.argmax(index["centroids"].astype(np.float64) @ q))
    covered = len(index["entry"]["segments"])
    rows = _physical_rows(store, s["segments"]).astype(np.float64)
    live = set(_live_physical(store, s["segments"]))
    start = sum(seg["rows"] for seg in s["segments"][:covered])
    candidates = [int(p) for p in index["positions"][index["offsets"][best]:index["offsets"][best + 1]] if p in live]
    candidates += [p for p in sorted(live) if p >= start]
    scores = rows[candidates] @ q
    if metric == "cosine":
        norms = np.linalg.norm(rows[candidates], axis=1)
        scores = np.where(norms > 0, scores / np.where(norms > 0, norms, 1), 0)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i]))[:count]
    ids = []
    for seg in s["segments"]:
        ids += _segment_ids(store, seg)
    return [ids[candidates[i]] for i in order]


def build_index(store, set_name, name, lists, metric="ip"):
    """Writes an ivf-int8 index over every segment of `set_name` (§10) and commits it. The
    centroids are the first `lists` live rows (normalised for cosine): §10.2 leaves their
    training to the writer. Each row goes to its nearest centroid in Euclidean distance."""
    m = manifest(store)
    s = m["sketch_sets"][set_name]
    live = _live_physical(store, s["segments"])
    x = _physical_rows(store, s["segments"])[live]
    if metric == "cosine":
        x = _unit(x)
    centroids = x[:lists].copy()
    distance = ((x[:, None, :].astype(np.float64) - centroids[None, :, :]) ** 2).sum(axis=2)
    assigned = np.argmin(distance, axis=1)
    order = sorted(range(len(live)), key=lambda i: (assigned[i], live[i]))
    positions = np.array([live[i] for i in order], dtype="<i8")
    x, assigned = x[order], assigned[order]
    r = x - centroids[assigned]                        # binary32, as the residual of §10.2
    scales = (np.abs(r).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, 1)[:, None]
    codes = np.clip(np.rint(r / safe), -127, 127).astype(np.int8)  # rint: round half to even
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assigned, minlength=lists))]).astype("<i8")
    index_id = secrets.token_hex(16)
    tmp = _tmp(store)
    checksums = {}
    with _new_file(tmp) as f:
        _root_attrs(f, "ivf-index")
        for key, value in (("index-id", index_id), ("set", set_name), ("metric", metric), ("kind", "ivf-int8"),
                           ("k", s["k"]), ("lists", lists), ("rows", len(live)), ("built-on-version", m["version"])):
            _set_attr(f, key, value)
        for dataset, values, kind in (("centroids", centroids, "ivf-centroids"), ("list-offsets", offsets, "ivf-list-offsets"),
                                      ("codes", codes, "ivf-codes"), ("code-scales", scales, "ivf-code-scales"),
                                      ("positions", positions, "ivf-row-positions")):
            d = _mappable(f, dataset, values)
            checksums[dataset] = checksum_numeric(values)
            _mark(d, kind, checksums[dataset])
            if dataset in ("codes", "code-scales", "positions"):
                # One block size over index rows for the three per-row arrays (§10.2).
                block_rows = rows_per_block(s["k"])
                _write_block_checksums(f, dataset, block_checksums_numeric(values, block_rows), block_rows)
    relative = f"indexes/{index_id}.h5"
    size, whole = _publish(store, tmp, relative)
    covered = [seg["file"] for seg in s["segments"]]
    entry = {"file": relative, "size": size, "file_checksum": whole, "checksums": checksums, "kind": "ivf-int8",
             "metric": metric, "lists": lists, "rows": len(live), "built_on_version": m["version"],
             "segments": covered, "parameters": {"default_nprobe": 1, "rerank": len(live)}}

    def change(latest):
        current = latest["sketch_sets"][set_name]
        if [seg["file"] for seg in current["segments"]][:len(covered)] != covered:
            raise ValueError(f"set {set_name} no longer starts with the indexed segments")
        current.setdefault("indexes", {})[name] = entry
        return 0, 0
    return _commit(store, "build-index", set_name, change)


def _live_addresses(store, set_entry):
    """(segment file, row) of every live row of a set, in live-position order (§5.4, §11)."""
    live = []
    for seg in set_entry["segments"]:
        gone = set(_deleted(store, seg).tolist())
        live += [(seg["file"], r) for r in range(seg["rows"]) if r not in gone]
    return live


def _ids_at(store, set_entry, addresses):
    """The id stored at each (segment file, row), read from the segment files."""
    by_file = {seg["file"]: seg for seg in set_entry["segments"]}
    cache = {}
    result = []
    for file, row in addresses:
        if file not in cache:
            cache[file] = _segment_ids(store, by_file[file])
        result.append(cache[file][row])
    return result


def read_result(store, name, version=None):
    """Saved result `name` (§11), every rule checked. When `set_version` is still retained,
    also that each position is a live position of that version and, for a 1.2 result, that each stored address lies in a segment that version lists and is
    the row at that position. Returns the rows' addresses as (segment file, row): stored
    (1.2), else translated from the positions while `set_version` is retained, else looked up
    by id in `version` (None for an id not live there)."""
    m = manifest(store, version)
    entry = m.get("results", {})[name]
    for key, kind in (("file", str), ("method", str), ("set", str), ("set_version", int), ("count", int),
                      ("checksums", dict), ("parameters", dict), ("size", int), ("file_checksum", str)):
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            raise ValueError(f"result {name}: manifest key {key} must be a {kind.__name__}, found {entry.get(key)!r}")
    if not re.fullmatch(r"results/[0-9a-f]{32}\.h5", entry["file"]):
        raise ValueError(f"result {name}: file {entry['file']} is not results/<32 hex>.h5")
    sums = entry["checksums"]
    with_addresses = "segments" in sums or "addresses" in sums
    expected_keys = {"ids", "positions", "scores"} | ({"segments", "addresses"} if with_addresses else set())
    if set(sums) != expected_keys:
        raise ValueError(f"result {name}: checksums has keys {sorted(sums)}, expected {sorted(expected_keys)}")
    path = os.path.join(store, entry["file"])
    n = entry["count"]
    stored = None
    with h5py.File(path, "r") as f:
        _check_root(f, "result", path)
        for key in ("method", "set"):
            if _get_str(f, key) != entry[key]:
                raise ValueError(f"{path}: attribute {key} is {_get_str(f, key)!r}, manifest says {entry[key]!r}")
        if _get_int(f, "set-version", path) != entry["set_version"]:
            raise ValueError(f"{path}: attribute set-version differs from the manifest's set_version")
        if json.loads(_get_str(f, "parameters")) != entry["parameters"]:
            raise ValueError(f"{path}: attribute parameters differs from the manifest's")
        ids = _checked_dataset(f, "ids", "row-ids", sums["ids"], "string", (n,), path)
        positions = _checked_dataset(f, "positions", "result-positions", sums["positions"], "<i8", (n,), path)
        scores = _checked_dataset(f, "scores", "result-scores", sums["scores"], "<f8", (n,), path)
        if with_addresses:
            if "segments" not in f or f["segments"].ndim != 1:
                raise ValueError(f"{path}: a 1.2 result needs a one-dimensional segments dataset")
            segments = _checked_dataset(f, "segments", "result-segments", sums["segments"], "string",
                                        f["segments"].shape, path)
            pairs = _checked_dataset(f, "addresses", "result-addresses", sums["addresses"], "<i8", (n, 2), path)
            if len(set(segments)) != len(segments) or \
                    not all(re.fullmatch(r"segments/[0-9a-f]{32}\.h5", s) for s in segments):
                raise ValueError(f"{path}: segments must be distinct segments/<32 hex>.h5 names")
            if n and ((pairs[:, 0] < 0).any() or (pairs[:, 0] >= len(segments)).any() or (pairs[:, 1] < 0).any()):
                raise ValueError(f"{path}: an address names no listed segment or a negative row")
            stored = [(segments[int(i)], int(r)) for i, r in pairs.reshape(-1, 2)]
    source = None
    if entry["set_version"] in versions(store):
        source = manifest(store, entry["set_version"])["sketch_sets"].get(entry["set"])
        if source is None:
            raise ValueError(f"{path}: set {entry['set']} is not in its set_version {entry['set_version']}")
    checked = source is not None
    if checked:
        live = _live_addresses(store, source)
        if (positions < 0).any() or (positions >= len(live)).any():
            raise ValueError(f"{path}: a position is outside the {len(live)} live rows of version {entry['set_version']}")
        at_positions = [live[p] for p in positions]
        if stored is not None and stored != at_positions:
            rows_of = {seg["file"]: seg["rows"] for seg in source["segments"]}
            bad = next(i for i, (a, b) in enumerate(zip(stored, at_positions)) if a != b)
            where = "a segment that version does not list" if stored[bad][0] not in rows_of else "another row"
            raise ValueError(f"{path}: row {bad} is stored at {stored[bad]} ({where}), its position names {at_positions[bad]}")
        addresses, how = at_positions, ("stored" if stored is not None else "positions")
    elif stored is not None:
        addresses, how = stored, "stored"
    else:
        current = m["sketch_sets"].get(entry["set"])
        live = _live_addresses(store, current) if current else []
        by_id = dict(zip(_ids_at(store, current, live), live)) if current else {}
        addresses, how = [by_id.get(i) for i in ids], "ids"
    return {"entry": entry, "ids": list(ids), "positions": positions, "scores": scores, "positions_checked": checked,
            "addresses": addresses, "addresses_from": how}


def resolve_result(store, name, at_version=None, result_version=None):
    """Each row of result `name` (read at `result_version`) in version `at_version` of its set:
    (live position, id), or None where the row is not live there (§11: by address, so a
    deletion of another row never changes which row it is)."""
    result = read_result(store, name, result_version)
    current = manifest(store, at_version)["sketch_sets"].get(result["entry"]["set"])
    if current is None:
        return [None] * len(result["ids"])
    live = _live_addresses(store, current)
    position_of = {address: p for p, address in enumerate(live)}
    ids = _ids_at(store, current, live)
    return [(position_of[a], ids[position_of[a]]) if a in position_of else None for a in result["addresses"]]


def save_result(store, name, method, set_name, positions, scores, parameters, with_addresses=True):
    """Writes and commits result `name` over the live rows of `set_name` in the latest version;
    `with_addresses=False` writes a result as format 1.1 did (positions only; set FORMAT_MINOR
    to 1 as well to write the whole version as 1.1)."""
    if not NAME_RULE.match(name):
        raise ValueError(f"invalid result name {name!r}")
    set_version = versions(store)[-1]
    source = manifest(store, set_version)["sketch_sets"][set_name]
    live = _live_addresses(store, source)
    positions = np.asarray(positions, dtype="<i8")
    scores = np.asarray(scores, dtype="<f8")
    rows = [live[p] for p in positions]
    ids = _ids_at(store, source, rows)
    listed = [seg["file"] for seg in source["segments"]]
    segments = [file for file in listed if file in {r[0] for r in rows}]
    pairs = np.array([[segments.index(file), row] for file, row in rows], dtype="<i8").reshape(-1, 2)
    tmp = _tmp(store)
    checksums = {"ids": checksum_strings(ids), "positions": checksum_numeric(positions), "scores": checksum_numeric(scores)}
    if with_addresses:
        checksums.update({"segments": checksum_strings(segments), "addresses": checksum_numeric(pairs)})
    with _new_file(tmp) as f:
        _root_attrs(f, "result")
        for key, value in (("method", method), ("set", set_name), ("set-version", set_version),
                           ("parameters", json.dumps(parameters, sort_keys=True))):
            _set_attr(f, key, value)
        _mark(_write_strings(f, "ids", ids), "row-ids", checksums["ids"])
        _mark(f.create_dataset("positions", data=positions), "result-positions", checksums["positions"])
        _mark(f.create_dataset("scores", data=scores), "result-scores", checksums["scores"])
        if with_addresses:
            _mark(_write_strings(f, "segments", segments), "result-segments", checksums["segments"])
            _mark(f.create_dataset("addresses", data=pairs), "result-addresses", checksums["addresses"])
    relative = f"results/{secrets.token_hex(16)}.h5"
    size, whole = _publish(store, tmp, relative)
    entry = {"file": relative, "size": size, "file_checksum": whole, "checksums": checksums, "method": method,
             "set": set_name, "set_version": set_version, "count": len(ids), "parameters": parameters}

    def change(m):
        if name in m.setdefault("results", {}):
            raise ValueError(f"result {name} exists: results are never replaced")
        m["results"][name] = entry
        return 0, 0
    return _commit(store, "save-result", set_name, change)

# ---- verify ----------------------------------------------------------------------------

def verify(store):
    problems = []
    checked = set()  # (file, size, checksum) whole-file checks done: files never change
    hashes_checked = set()
    for version in versions(store):
        try:
            m = manifest(store, version)
        except Exception as error:  # noqa: BLE001 - report and go on
            problems.append(f"v{version}: {error}")
            continue
        if m.get("parent") != (None if version == 0 else version - 1):
            problems.append(f"v{version}: parent is {m.get('parent')!r}, expected "
                            f"{'null or omitted' if version == 0 else version - 1}")
        entries = []
        for s in m["sketch_sets"].values():
            for seg in s["segments"]:
                entries.append(seg)
                if seg.get("deletions"):
                    entries.append(seg["deletions"])
            entries += list((s.get("indexes") or {}).values())
            entries += list(s.get("segment_lists") or [])
        entries += list(m["tensor_sets"].values())
        entries += list((m.get("results") or {}).values())
        for e in entries:
            if (e["file"], e.get("size"), e.get("file_checksum")) in checked:
                continue
            checked.add((e["file"], e.get("size"), e.get("file_checksum")))
            path = os.path.join(store, e["file"])
            if not os.path.exists(path):
                problems.append(f"v{version} {e['file']}: missing")
                continue
            size, whole = file_checksum(path)
            if (size, whole) != (e.get("size"), e.get("file_checksum")):
                problems.append(f"v{version} {e['file']}: whole-file size/checksum {size}/{whole}, "
                                f"manifest says {e.get('size')}/{e.get('file_checksum')}")
        for name, s in m["sketch_sets"].items():
            try:
                _, ids, *_ = read_set(store, name, version)
                if len(set(ids)) != len(ids):
                    problems.append(f"v{version} set {name}: duplicate ids")
                for seg in s["segments"]:
                    with h5py.File(os.path.join(store, seg["file"]), "r") as f:
                        d = f["rows"]
                        plist = d.id.get_create_plist()
                        aligned = d.id.get_offset() is not None and d.id.get_offset() % 4096 == 0
                        if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters() or \
                                (d.nbytes >= 4096 and not aligned):
                            problems.append(f"v{version} {seg['file']}: rows not mappable")
            except Exception as error:  # noqa: BLE001
                problems.append(f"v{version} set {name}: {error}")
        for name, s in m["sketch_sets"].items():
            try:
                problems += [f"v{version} set {name}: {p}" for p in _check_id_hashes(store, s, hashes_checked)]
            except Exception as error:  # noqa: BLE001
                problems.append(f"v{version} set {name}: id hashes: {error}")
        for name in m["tensor_sets"]:
            try:
                read_tensors(store, name, version)
            except Exception as error:  # noqa: BLE001
                problems.append(f"v{version} tensor set {name}: {error}")
        for set_name, s in m["sketch_sets"].items():
            for name in s.get("indexes") or {}:
                try:
                    read_index(store, set_name, name, version)
                except Exception as error:  # noqa: BLE001
                    problems.append(f"v{version} index {set_name}/{name}: {error}")
        for name in m.get("results") or {}:
            try:
                read_result(store, name, version)
            except Exception as error:  # noqa: BLE001
                problems.append(f"v{version} result {name}: {error}")
    return problems


def _check_id_hashes(store, s, done):
    """§5.1 and §7.1: each segment's and each segment list's id hash table is exactly the
    table of its ids (each file once: `done` holds the files checked)."""
    problems = []
    for seg in s["segments"]:
        if "id-hashes" not in seg["checksums"] or seg["file"] in done:
            continue  # written before format 1.2, or checked already
        done.add(seg["file"])
        path = os.path.join(store, seg["file"])
        with h5py.File(path, "r") as f:
            found = (_read_int64(f, "id-hashes", "row-id-hashes", seg["checksums"]["id-hashes"], seg["rows"], path),
                     _read_int64(f, "id-hash-rows", "row-id-hash-rows", seg["checksums"]["id-hash-rows"], seg["rows"], path))
        expected = _hash_table(_segment_ids(store, seg))
        if not (np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])):
            problems.append(f"{seg['file']}: id hash table does not match the ids")
    start = 0
    for lst in s.get("segment_lists") or []:
        covered = s["segments"][start:start + lst["count"]]
        start += lst["count"]
        if lst["file"] in done:
            continue
        done.add(lst["file"])
        ids = []
        for seg in covered:
            ids += _segment_ids(store, seg)
        path = os.path.join(store, lst["file"])
        with h5py.File(path, "r") as f:
            if f.attrs["count"] != lst["count"] or f.attrs["rows"] != lst["rows"] or _get_str(f, "set") is None:
                problems.append(f"{lst['file']}: root attributes disagree with the manifest entry")
            found = (_read_int64(f, "id-hashes", "row-id-hashes", lst["checksums"]["id-hashes"], lst["rows"], path),
                     _read_int64(f, "id-hash-positions", "segment-list-positions", lst["checksums"]["id-hash-positions"],
                                 lst["rows"], path))
        expected = _hash_table(ids)
        if not (np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])):
            problems.append(f"{lst['file']}: id hash table does not match the ids of its segments")
    return problems


def main(argv):
    if len(argv) >= 2 and argv[0] == "verify":
        problems = verify(argv[1])
        for p in problems:
            print("problem:", p)
        print("ok" if not problems else f"{len(problems)} problems")
        return 1 if problems else 0
    if len(argv) >= 3 and argv[0] == "dump":
        store, out = argv[1], argv[2]
        version = int(argv[argv.index("--version") + 1]) if "--version" in argv else None
        os.makedirs(out, exist_ok=True)
        m = manifest(store, version)
        for name in m["sketch_sets"]:
            rows, ids, labels, metadata, columns = read_set(store, name, version)
            np.save(f"{out}/set.{name}.rows.npy", rows)
            json.dump({"ids": ids, "labels": labels, "metadata": metadata,
                       "columns": {c: v.tolist() for c, v in columns.items()}}, open(f"{out}/set.{name}.json", "w"))
        for name in m["tensor_sets"]:
            for t, v in read_tensors(store, name, version).items():
                np.save(f"{out}/tensors.{name}.{_escape(t)}.npy", v)
        return 0
    if len(argv) == 2 and argv[0] == "crc32c":
        print(fmt(crc32c(open(argv[1], "rb").read())))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
