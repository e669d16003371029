/*
 * gradsketch.h — the C ABI of the GradSketch engine (libgradsketch-c.so).
 *
 * Normative description: Spec/c-api.md. This header is the whole interface: no Swift type
 * and no HDF5 identifier crosses it. It is written for C callers and for Python's ctypes
 * (every type is a fixed-width integer, a double/float, a pointer, or a plain struct of
 * those).
 *
 * Conventions (Spec/c-api.md §3–§6):
 *   - Every fallible function returns a gs_status (GS_OK = 0) and takes a last argument
 *     `char **error`. On failure, when `error` is not NULL, *error receives a NUL-terminated
 *     UTF-8 message that the caller owns and releases with gs_free(). On success *error is
 *     set to NULL. Pass NULL to ignore messages.
 *   - Out-parameters are written only on GS_OK.
 *   - Handles (gs_store, gs_snapshot, ...) are opaque; each has exactly one release function,
 *     which accepts NULL.
 *   - Pointers returned by accessor functions ("borrowed") stay valid until the handle they
 *     came from is released, and must not be freed by the caller.
 *   - Nothing here aborts the process on bad input: NULL pointers, unknown codes and
 *     impossible shapes return GS_INVALID_INPUT with a message.
 */
#ifndef GRADSKETCH_H
#define GRADSKETCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ABI version (Spec/c-api.md §2) ------------------------------------------------------ */

/* MAJOR changes when any existing declaration changes meaning or layout; MINOR when functions
 * or constants are added. A caller built against MAJOR.MINOR runs with a library whose major
 * is equal and whose minor is at least MINOR. */
#define GS_ABI_VERSION_MAJOR 1
#define GS_ABI_VERSION_MINOR 2
#define GS_ABI_VERSION ((GS_ABI_VERSION_MAJOR << 16) | GS_ABI_VERSION_MINOR)

/* The library's GS_ABI_VERSION. Thread-safe. */
uint32_t gs_abi_version(void);

/* ---- Status codes (Spec/c-api.md §3) ----------------------------------------------------- */

typedef int32_t gs_status;
enum {
    GS_OK = 0,
    GS_INVALID_INPUT = 1,        /* a rule broken by the arguments: NULL, shape, dtype, names, ids */
    GS_NOT_FOUND = 2,            /* no such set, tensor set, version, id or segment */
    GS_CONFLICT = 3,             /* a concurrent commit made this change impossible */
    GS_CORRUPT = 4,              /* stored data fails a checksum or structural check */
    GS_IO = 5,                   /* the operating system or HDF5 failed */
    GS_UNSUPPORTED_VERSION = 6,  /* a format version this library does not read */
    GS_NOT_A_STORE = 7,          /* the path is not a GradSketch store */
    GS_INVALID_STATE = 8,        /* the handle cannot do this now (e.g. a committed session) */
    GS_INTERNAL = 9              /* any other engine error; the message says what */
};

/* The constant's name without the GS_ prefix ("OK", "INVALID_INPUT", ...), "UNKNOWN" for
 * other values. Static storage; thread-safe. */
const char *gs_status_name(gs_status status);

/* Releases memory the library handed over (error messages, JSON text). NULL is allowed. */
void gs_free(void *pointer);

/* ---- Value types ------------------------------------------------------------------------- */

typedef int32_t gs_dtype;
enum {
    GS_DTYPE_AUTO = 0,      /* only where documented: "the natural stored type for the input" */
    GS_DTYPE_FLOAT16 = 1,   /* IEEE binary16, little-endian */
    GS_DTYPE_FLOAT32 = 2,   /* IEEE binary32, little-endian */
    GS_DTYPE_BFLOAT16 = 3,  /* input rows only (stored as float32) */
    GS_DTYPE_FLOAT64 = 4    /* input rows only (stored as float32) */
};

/* A row's stable address: its segment's index in the set's segment list and its row in that
 * segment file (deleted rows included). Same layout as a numpy dtype [("segment","<i8"),
 * ("row","<i8")]. */
typedef struct gs_address {
    int64_t segment;
    int64_t row;
} gs_address;

/* N strings packed in one buffer: string i is bytes[offsets[i] ..< offsets[i + 1]], UTF-8,
 * where one NUL byte at the end of that range, if present, terminates the string and is not
 * part of it (so both plain concatenations and back-to-back C strings can be passed); no other
 * NUL is allowed. `offsets` has N + 1 non-decreasing entries, offsets[0] >= 0. This is the
 * input form for ids, labels and metadata, and the form gs_strings_packed hands back. */
typedef struct gs_text {
    const char *bytes;
    const int64_t *offsets;
} gs_text;

/* ---- Opaque handles ---------------------------------------------------------------------- */

typedef struct gs_store gs_store;                  /* an open store */
typedef struct gs_snapshot gs_snapshot;            /* one version, opened once */
typedef struct gs_append gs_append;                /* a streaming append session */
typedef struct gs_result gs_result;                /* hits of a query or a selection */
typedef struct gs_strings gs_strings;              /* an immutable list of strings */
typedef struct gs_verify_report gs_verify_report;  /* the outcome of gs_store_verify */

/* ---- Strings handed back ----------------------------------------------------------------- */

/* Number of strings. */
int64_t gs_strings_count(const gs_strings *strings);
/* String i as a NUL-terminated UTF-8 string (borrowed), NULL when i is out of range. */
const char *gs_strings_get(const gs_strings *strings, int64_t index);
/* The packed form (borrowed): the strings are stored back to back, each followed by a NUL;
 * offsets has count + 1 entries and the range of string i includes its NUL (see gs_text), so
 * in Python `ctypes.string_at(bytes, offsets[count]).split(b"\0")[:-1]` decodes them all. */
gs_text gs_strings_packed(const gs_strings *strings);
/* Releases a list the caller owns (never one borrowed from a gs_result). NULL is allowed. */
void gs_strings_free(gs_strings *strings);

/* ---- Store (Spec/c-api.md §7) — every gs_store function is thread-safe ------------------- */

/* Creates a new, empty store at `path` (a new path or an empty directory); commits version 0. */
gs_status gs_store_create(const char *path, gs_store **out_store, char **error);
/* Opens an existing store. */
gs_status gs_store_open(const char *path, gs_store **out_store, char **error);
/* Releases the handle. Snapshots and append sessions opened from it stay usable. */
void gs_store_close(gs_store *store);
/* The latest committed version. */
gs_status gs_store_latest_version(const gs_store *store, int64_t *out_version, char **error);
/* Deletes rows by id from `set` and commits the change as one version (written to
 * *out_version when not NULL). `ids` holds `count` strings. */
gs_status gs_store_delete(gs_store *store, const char *set, const gs_text *ids, int64_t count,
                          int64_t *out_version, char **error);
/* Checks every retained version's files (whole-file and dataset checksums, structure).
 * Problems found are in the report, not in the status: GS_OK means "verification ran". */
gs_status gs_store_verify(gs_store *store, gs_verify_report **out_report, char **error);

/* Report accessors: nonzero when no problem was found; the number of problems; problem i as
 * text (borrowed; NULL when out of range); files and bytes checked. */
int gs_verify_report_clean(const gs_verify_report *report);
int64_t gs_verify_report_problem_count(const gs_verify_report *report);
const char *gs_verify_report_problem(const gs_verify_report *report, int64_t index);
int64_t gs_verify_report_files_checked(const gs_verify_report *report);
int64_t gs_verify_report_bytes_checked(const gs_verify_report *report);
void gs_verify_report_free(gs_verify_report *report);

/* ---- Imports (Spec/c-api.md §7.1, Spec/import.md) ----------------------------------------- */

/* Progress of long work: `done` of `total` units (rows; total -1 when unknown), `stage` a short
 * borrowed label. Called on the calling thread. Return nonzero to cancel (the call then fails
 * with GS_INVALID_STATE "cancelled" and commits nothing). */
typedef int32_t (*gs_progress_fn)(void *context, int64_t done, int64_t total, const char *stage);
/* Imports gradients written by another tool into sketch set `set`, streaming, as ONE version.
 * format: "trak", "less", "bergson", "npy", "safetensors" or "auto" (detected from the path).
 * options_json: NULL or a JSON object of format options (Spec/c-api.md §7.1 lists them; e.g.
 * {"ids": "ids.txt", "dtype": "float16", "model_id": 0, "checkpoint": "..."}).
 * progress: NULL or called after every batch with `context`.
 * out_report_json: NULL or where to put caller-owned JSON (gs_free)
 * {"set":..., "version":..., "rows":..., "k":..., "format":..., "sources":[files], "projection": {...} | null, ...}. */
gs_status gs_store_import(gs_store *store, const char *format, const char *path, const char *set,
                          const char *options_json, gs_progress_fn progress, void *context,
                          char **out_report_json, char **error);

/* ---- Append sessions (Spec/c-api.md §8) — a session is used by one thread at a time ------ */

/* Flags of gs_append_begin. */
#define GS_APPEND_ALLOW_NONFINITE 1u
/* Flags of gs_append_rows. */
#define GS_METADATA_JSON 1u

/* Begins a streaming append to `set` (created by the first batch when it does not exist).
 * stored_dtype: GS_DTYPE_AUTO, GS_DTYPE_FLOAT16 or GS_DTYPE_FLOAT32. attributes_json: NULL or
 * a JSON object of set attributes (Spec/format.md §7.1) used when the set is created. */
gs_status gs_append_begin(gs_store *store, const char *set, gs_dtype stored_dtype,
                          const char *attributes_json, uint32_t flags,
                          gs_append **out_session, char **error);
/* Writes one batch of `row_count` rows of width `k`, row-major, of type `dtype` (any float
 * GS_DTYPE_*), read from `rows` while the call runs (no copy other than the write). ids,
 * labels, metadata: NULL or `row_count` strings each. flags: 0 or GS_METADATA_JSON. */
gs_status gs_append_rows(gs_append *session, const void *rows, gs_dtype dtype, int64_t row_count,
                         int64_t k, const gs_text *ids, const gs_text *labels,
                         const gs_text *metadata, uint32_t flags, char **error);
/* Publishes every batch as one version (Spec/format.md §7.2). out_version, out_rows: NULL or
 * where to write the new version and the rows added. out_warnings: NULL or where to put a list
 * (caller-owned, possibly empty) of post-commit warnings; the version IS committed. The session
 * is finished afterwards, whatever the status. */
gs_status gs_append_commit(gs_append *session, const char *detail, int64_t *out_version,
                           int64_t *out_rows, gs_strings **out_warnings, char **error);
/* Discards every batch written; nothing becomes visible. Finishes the session. */
void gs_append_abort(gs_append *session);
/* Releases the handle; a session neither committed nor aborted is aborted first. */
void gs_append_free(gs_append *session);

/* ---- Snapshots (Spec/c-api.md §9) — every gs_snapshot function is thread-safe ------------ */

/* Opens `version` of the store (-1 = the latest). */
gs_status gs_snapshot_open(gs_store *store, int64_t version, gs_snapshot **out_snapshot,
                           char **error);
/* Releases the snapshot; views and pointers borrowed from it become invalid. Must not run
 * concurrently with another call on the same snapshot. */
void gs_snapshot_close(gs_snapshot *snapshot);
/* The snapshot's version. */
int64_t gs_snapshot_version(const gs_snapshot *snapshot);
/* The sketch sets of the version, sorted by name bytes; name i is borrowed. */
int64_t gs_snapshot_set_count(const gs_snapshot *snapshot);
const char *gs_snapshot_set_name(const gs_snapshot *snapshot, int64_t index);

/* Shape of a sketch set. Any out-pointer may be NULL. out_rows counts live rows. */
gs_status gs_snapshot_set_info(gs_snapshot *snapshot, const char *set, int64_t *out_k,
                               gs_dtype *out_dtype, int64_t *out_rows, int64_t *out_segments,
                               char **error);
/* Rows in each segment file (deleted rows included): writes min(capacity, segments) values. */
gs_status gs_snapshot_segment_rows(gs_snapshot *snapshot, const char *set,
                                   int64_t *out_rows_per_segment, int64_t capacity,
                                   char **error);
/* The set's attributes as JSON text (caller-owned; gs_free). */
gs_status gs_snapshot_set_attributes(gs_snapshot *snapshot, const char *set, char **out_json,
                                     char **error);

/* A zero-copy view of one segment's rows: `rows` rows of `k` elements of `dtype`, row-major,
 * deleted rows included; `deleted` lists the (sorted) rows of the segment that are deleted in
 * this snapshot. Every pointer is borrowed from the snapshot and valid until it is closed. */
typedef struct gs_segment_view {
    const void *data;
    int64_t rows;
    int64_t k;
    gs_dtype dtype;
    int32_t reserved;       /* zero */
    const int64_t *deleted;
    int64_t deleted_count;
} gs_segment_view;
gs_status gs_snapshot_segment_view(gs_snapshot *snapshot, const char *set, int64_t segment,
                                   gs_segment_view *out_view, char **error);

/* What gs_snapshot_strings reads. */
typedef int32_t gs_annotation;
enum { GS_IDS = 1, GS_LABELS = 2, GS_METADATA = 3 };
/* The ids (labels, metadata) of `count` rows given by address, in order, as a caller-owned
 * list (gs_strings_free). */
gs_status gs_snapshot_strings(gs_snapshot *snapshot, const char *set, gs_annotation what,
                              const gs_address *addresses, int64_t count,
                              gs_strings **out_strings, char **error);

/* ---- Queries and selections (Spec/c-api.md §10) ------------------------------------------ */

typedef int32_t gs_metric;
enum { GS_METRIC_IP = 0, GS_METRIC_COSINE = 1 };
typedef int32_t gs_index_policy;
enum { GS_INDEX_AUTO = 0, GS_INDEX_EXACT = 1, GS_INDEX_NAMED = 2 };
typedef int32_t gs_aggregation;
enum { GS_AGGREGATE_NONE = 0, GS_AGGREGATE_MEAN = 1, GS_AGGREGATE_MAX = 2 };

/* Query parameters. Initialise with gs_query_params_init (which sets struct_size and the
 * defaults: inner product, top 10, largest first, auto index, tuned probes, no re-rank, no
 * aggregation, annotations fetched); later minor versions append fields and read only
 * struct_size bytes. */
typedef struct gs_query_params {
    uint32_t struct_size;
    gs_metric metric;
    int64_t top_k;
    int32_t smallest;         /* nonzero: lowest scores first */
    gs_index_policy index;
    const char *index_name;   /* for GS_INDEX_NAMED */
    int64_t nprobe;           /* 0: tuned; > 0: lists probed */
    double recall_target;     /* 0: unused; in (0, 1]: probe for this recall (nprobe must be 0) */
    int64_t rerank;           /* 0: none; > 0: candidates re-ranked exactly */
    gs_aggregation aggregation;
    int32_t annotations;      /* nonzero: fetch labels and metadata of the hits */
} gs_query_params;
void gs_query_params_init(gs_query_params *params);

/* Top-k of `count` query vectors (float32, row-major, `k` wide each) against `set`. */
gs_status gs_snapshot_query(gs_snapshot *snapshot, const char *set, const float *vectors,
                            int64_t count, int64_t k, const gs_query_params *params,
                            gs_result **out_result, char **error);

/* Queries named by a string instead of vectors. */
typedef int32_t gs_query_source;
enum {
    GS_SOURCE_ROW = 1,            /* name: the id of a stored row of `set` */
    GS_SOURCE_DELTA = 2,          /* name: a tensor set, projected with the set's projection */
    GS_SOURCE_NEGATED_DELTA = 3,  /* as GS_SOURCE_DELTA, negated */
    GS_SOURCE_QUERY_SET = 4       /* name: another sketch set, every live row a query */
};
gs_status gs_snapshot_query_by(gs_snapshot *snapshot, const char *set, gs_query_source source,
                               const char *name, const gs_query_params *params,
                               gs_result **out_result, char **error);

typedef int32_t gs_select_method;
enum {
    GS_SELECT_GREEDY = 0,
    GS_SELECT_GREEDY_BATCHED = 1,   /* batch = gs_select_params.batch */
    GS_SELECT_TOP_K = 2,
    GS_SELECT_RANDOM = 3            /* seed = gs_select_params.seed */
};
typedef struct gs_select_params {
    uint32_t struct_size;
    gs_select_method method;
    int64_t count;            /* rows to select, >= 1 */
    int64_t batch;            /* GS_SELECT_GREEDY_BATCHED */
    uint64_t seed;            /* GS_SELECT_RANDOM */
} gs_select_params;
/* Defaults: greedy, count 10, batch 0, seed 0. */
void gs_select_params_init(gs_select_params *params);

/* Selects rows of `set` towards a target: either `target` (float32, `k` values) or, when
 * target is NULL, the tensor set `delta` (negated when `negate` is nonzero). */
gs_status gs_snapshot_select(gs_snapshot *snapshot, const char *set, const float *target,
                             int64_t k, const char *delta, int negate,
                             const gs_select_params *params, gs_result **out_result,
                             char **error);

/* A result holds one list of hits per query (a selection has one list; an aggregated query
 * has one). Hits of list q are the flat indices offsets[q] ..< offsets[q + 1]; every pointer is
 * borrowed from the result. Scores are float64 (a query's float32 scores widen exactly). */
int64_t gs_result_list_count(const gs_result *result);
const int64_t *gs_result_offsets(const gs_result *result);      /* list_count + 1 entries */
int64_t gs_result_hit_count(const gs_result *result);           /* offsets[list_count] */
const double *gs_result_scores(const gs_result *result);
const gs_address *gs_result_addresses(const gs_result *result);
const gs_strings *gs_result_ids(const gs_result *result);
/* NULL when annotations were not fetched; an absent label or metadata string is empty. */
const gs_strings *gs_result_labels(const gs_result *result);
const gs_strings *gs_result_metadata(const gs_result *result);
int64_t gs_result_version(const gs_result *result);
/* How the engine answered (a query's plan, as JSON; "{}" for a selection). Borrowed. */
const char *gs_result_plan_json(const gs_result *result);
void gs_result_free(gs_result *result);

/* ---- Added in 1.1: projection factors, tensor sets, versions (Spec/c-api.md §11) -------- */

/* The dense Rademacher matrix of Spec/projection.md §2 for `stream` under `seed`: `rows` x `cols`
 * binary32, row-major, into `out` (rows*cols floats, caller-owned), entries ±1/sqrt(rows) exactly
 * as the engine applies them (a Kronecker parameter NAME uses streams "NAME/out" (k_out x n_out)
 * and "NAME/in" (k_in x n_in), §4). Thread-safe. */
gs_status gs_projection_rademacher(uint64_t seed, const char *stream, int64_t rows, int64_t cols,
                                   float *out, char **error);

/* One tensor of a tensor set to write: data is row-major, little-endian, of `dtype`
 * (GS_DTYPE_FLOAT16/FLOAT32/BFLOAT16/FLOAT64; stored as the engine stores tensors). */
typedef struct gs_tensor {
    const char *name;
    gs_dtype dtype;
    int32_t ndim;
    const int64_t *shape;
    const void *data;
} gs_tensor;
/* Writes tensor set `name` of `kind` ("weights" or "delta" or another kind the format allows)
 * and commits it as one version. */
gs_status gs_store_put_tensors(gs_store *store, const char *name, const char *kind,
                               const gs_tensor *tensors, int64_t count, const char *detail,
                               int64_t *out_version, char **error);
/* Commits tensor set `name` = `finetuned` - `base` (Spec/format.md, the delta operation). */
gs_status gs_store_delta(gs_store *store, const char *name, const char *base,
                         const char *finetuned, const char *detail, int64_t *out_version,
                         char **error);
/* The tensor sets of a snapshot, sorted by name bytes; name i is borrowed. */
int64_t gs_snapshot_tensor_set_count(const gs_snapshot *snapshot);
const char *gs_snapshot_tensor_set_name(const gs_snapshot *snapshot, int64_t index);
/* The store's versions as JSON (caller-owned, gs_free): [{"version":0,"detail":"...","time":"..."}, ...]. */
gs_status gs_store_versions_json(gs_store *store, char **out_json, char **error);

/* Prepared appends — many writers, one commit (Spec/c-api.md §12 and Spec/format.md §7.2).
 * gs_append_prepare finishes writing the session's segments (published, not referenced by any
 * version) and hands back a token (caller-owned JSON text, gs_free) that describes them. The
 * session keeps its writer pin (so vacuum keeps its files) until it is freed; it can no longer
 * append, commit or abort-by-commit; gs_append_abort after prepare removes its files (only do
 * that if the commit did not happen). Any process holding a store handle then commits the
 * tokens of one or more sessions (from any processes, e.g. every rank of a torchrun job) as ONE
 * version with gs_store_commit_prepared: all or nothing, every rule checked as for one session
 * (ids unique across all tokens, one projection per set, dtype/k equal); tokens of the same set
 * are appended in token order. A token committed once is refused a second time (its files are
 * already referenced). */
gs_status gs_append_prepare(gs_append *session, char **out_token, char **error);
gs_status gs_store_commit_prepared(gs_store *store, const gs_text *tokens, int64_t count,
                                   const char *detail, int64_t *out_version, int64_t *out_rows,
                                   char **error);

/* ---- Added in 1.2: reading stored tensors (Spec/c-api.md §13) ---------------------------- */

/* One stored tensor of a tensor set, borrowed from the snapshot: every pointer stays valid
 * until the snapshot is closed and must not be written or freed. `data` holds
 * `element_count` = prod(shape) elements of `dtype` (GS_DTYPE_FLOAT16 or GS_DTYPE_FLOAT32, the
 * stored type), row-major, little-endian, verified against the stored checksum; it is NULL
 * only when element_count is 0. `mapped` is 1 when `data` points into a read-only mapping of
 * the store file (zero-copy: the stored dataset is contiguous), 0 when it is a copy the
 * snapshot owns (a layout that cannot be mapped). `shape` has `ndim` entries (never NULL). */
typedef struct gs_tensor_view {
    const char *name;
    gs_dtype dtype;
    int32_t ndim;
    const int64_t *shape;
    const void *data;
    int64_t element_count;
    int32_t mapped;
    int32_t reserved;       /* zero */
} gs_tensor_view;
/* The number of tensors in tensor set `tensor_set` of the snapshot's version. */
gs_status gs_snapshot_tensor_count(gs_snapshot *snapshot, const char *tensor_set,
                                   int64_t *out_count, char **error);
/* Tensor `index` (0 ..< count, tensors sorted by the bytes of their names) of `tensor_set`.
 * Unknown tensor set: GS_NOT_FOUND; index out of range: GS_NOT_FOUND naming the range. */
gs_status gs_snapshot_tensor_view(gs_snapshot *snapshot, const char *tensor_set, int64_t index,
                                  gs_tensor_view *out_view, char **error);

#ifdef __cplusplus
}
#endif

#endif /* GRADSKETCH_H */
