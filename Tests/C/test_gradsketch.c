/*
 * The C ABI's conformance test (Spec/c-api.md): compiled against gradsketch.h alone, linked
 * with libgradsketch-c.so, run by Tests/C/run.sh (under valgrind when it is installed).
 *
 * Expected values come from the test itself: the input bytes (for the zero-copy view), a
 * double-precision top-k and greedy selection computed here (for queries and selections), and
 * hand-written codes for the error paths.
 */
#define _POSIX_C_SOURCE 200809L
#include "gradsketch.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(condition, ...)                                                                  \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(condition)) {                                                                    \
            failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #condition);               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
        }                                                                                      \
    } while (0)

/* Stops the test when a call that everything after it needs fails. */
#define REQUIRE_OK(call)                                                                       \
    do {                                                                                       \
        char *require_error = NULL;                                                            \
        gs_status require_status = (call);                                                     \
        if (require_status != GS_OK) {                                                         \
            fprintf(stderr, "FAIL %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call,     \
                    gs_status_name(require_status), require_error ? require_error : "");       \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

enum { K = 16, BATCH = 24, BATCHES = 2, ROWS = BATCH * BATCHES, QUERIES = 3, TOP = 5 };

/* Deterministic inputs: a 64-bit LCG mapped to [-1, 1). */
static uint64_t lcg_state = 0x2545F4914F6CDD1DULL;
static float next_value(void) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(lcg_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The gs_text form of `count` C strings: one buffer, count + 1 offsets (no terminators). */
typedef struct packed_text {
    char *bytes;
    int64_t *offsets;
    gs_text text;
} packed_text;

static packed_text pack(char strings[][32], int count) {
    packed_text packed;
    size_t total = 0;
    for (int i = 0; i < count; i++) total += strlen(strings[i]);
    packed.bytes = malloc(total + 1);
    packed.offsets = malloc(sizeof(int64_t) * (size_t)(count + 1));
    size_t position = 0;
    for (int i = 0; i < count; i++) {
        packed.offsets[i] = (int64_t)position;
        memcpy(packed.bytes + position, strings[i], strlen(strings[i]));
        position += strlen(strings[i]);
    }
    packed.offsets[count] = (int64_t)position;
    packed.text.bytes = packed.bytes;
    packed.text.offsets = packed.offsets;
    return packed;
}

static void unpack(packed_text *packed) {
    free(packed->bytes);
    free(packed->offsets);
}

/* Checks that a call failed with `expected` and a message containing `needle`; frees it. */
static void expect_error(gs_status status, char *error, gs_status expected, const char *needle,
                         const char *what, int line) {
    checks++;
    if (status != expected || error == NULL || strstr(error, needle) == NULL) {
        failures++;
        fprintf(stderr, "FAIL line %d (%s): expected %s with a message containing \"%s\", found %s: %s\n",
                line, what, gs_status_name(expected), needle, gs_status_name(status),
                error ? error : "(no message)");
    }
    gs_free(error);
}
#define EXPECT_ERROR(call, expected, needle)                                                   \
    do {                                                                                       \
        char *error = NULL;                                                                    \
        gs_status status = (call);                                                             \
        expect_error(status, error, (expected), (needle), #call, __LINE__);                    \
    } while (0)

static double dot(const float *a, const float *b) {
    double sum = 0;
    for (int i = 0; i < K; i++) sum += (double)a[i] * (double)b[i];
    return sum;
}

static double norm(const float *a) { return sqrt(dot(a, a)); }

/* Indices of the `top` live rows with the largest score, ties to the lower index. */
static void oracle_top(const double *scores, const int *live, int rows, int top, int *out) {
    int taken[ROWS] = {0};
    for (int t = 0; t < top; t++) {
        int best = -1;
        for (int r = 0; r < rows; r++) {
            if (!live[r] || taken[r]) continue;
            if (best < 0 || scores[r] > scores[best]) best = r;
        }
        out[t] = best;
        taken[best] = 1;
    }
}

/* Checks that a result's single-list hits are exactly rows `expected` with `scores`. */
static void check_hits(const gs_result *result, int64_t list, const int *expected, const double *scores,
                       int top, const char *what) {
    const int64_t *offsets = gs_result_offsets(result);
    const gs_strings *ids = gs_result_ids(result);
    const double *hit_scores = gs_result_scores(result);
    CHECK(offsets[list + 1] - offsets[list] == top, "%s: expected %d hits, found %lld", what, top,
          (long long)(offsets[list + 1] - offsets[list]));
    if (offsets[list + 1] - offsets[list] != top) return;
    for (int t = 0; t < top; t++) {
        int64_t hit = offsets[list] + t;
        char want[32];
        snprintf(want, sizeof want, "row-%d", expected[t]);
        const char *found = gs_strings_get(ids, hit);
        CHECK(found && strcmp(found, want) == 0, "%s: hit %d expected %s, found %s", what, t, want,
              found ? found : "(null)");
        double expected_score = scores[expected[t]];
        CHECK(fabs(hit_scores[hit] - expected_score) <= 1e-5 * fmax(1.0, fabs(expected_score)),
              "%s: hit %d expected score %.9g, found %.9g", what, t, expected_score, hit_scores[hit]);
    }
}

/* One thread's share of the concurrency check: repeated queries and views on a shared
 * snapshot, each compared with the answer the oracle gave. */
typedef struct worker {
    gs_snapshot *snapshot;
    const float *query;
    char expected_first[32];
    int ok;
} worker;

static void *query_worker(void *argument) {
    worker *work = argument;
    work->ok = 1;
    for (int i = 0; i < 10 && work->ok; i++) {
        gs_query_params params;
        gs_query_params_init(&params);
        params.top_k = TOP;
        params.index = GS_INDEX_EXACT;
        gs_result *result = NULL;
        if (gs_snapshot_query(work->snapshot, "train", work->query, 1, K, &params, &result, NULL) != GS_OK) {
            work->ok = 0;
            break;
        }
        const char *first = gs_strings_get(gs_result_ids(result), 0);
        work->ok = first != NULL && strcmp(first, work->expected_first) == 0;
        gs_result_free(result);
        gs_segment_view view;
        if (gs_snapshot_segment_view(work->snapshot, "train", 0, &view, NULL) != GS_OK || view.k != K) work->ok = 0;
    }
    return NULL;
}

/* ---- ABI 1.1 additions ------------------------------------------------------------------ */

/* Signs of the reference's rademacher(42, "blocks.0.attn/in", 3, 40) (Spec/reference/
 * projection_ref.py, row-major), written down from its output: an independent oracle. */
static const char reference_signs[] =
    "++++++--+++-++-+------++---+--++++--++-+-+--+---++-+--++++++-+-+-+--+--++--++-+---+-+++-++-+-++-----+++++-++--+-+-+-++++";

static void test_projection_factors(void) {
    float factor[3 * 40];
    REQUIRE_OK(gs_projection_rademacher(42, "blocks.0.attn/in", 3, 40, factor, &require_error));
    const float scale = (float)(1.0 / sqrt(3.0));
    int same = 1;
    for (int i = 0; i < 3 * 40; i++) same = same && factor[i] == (reference_signs[i] == '-' ? -scale : scale);
    CHECK(same, "the Rademacher factor is the reference's, entries ±1/sqrt(3)");
    float other[3 * 40];
    REQUIRE_OK(gs_projection_rademacher(42, "blocks.0.attn/out", 3, 40, other, &require_error));
    CHECK(memcmp(factor, other, sizeof factor) != 0, "the /in and /out streams differ");
    EXPECT_ERROR(gs_projection_rademacher(42, NULL, 3, 40, factor, &error), GS_INVALID_INPUT, "stream is NULL");
    EXPECT_ERROR(gs_projection_rademacher(42, "x", 0, 40, factor, &error), GS_INVALID_INPUT, "rows = 0");
    EXPECT_ERROR(gs_projection_rademacher(42, "x", 3, 40, NULL, &error), GS_INVALID_INPUT, "out is NULL");
    EXPECT_ERROR(gs_projection_rademacher(42, "x", INT64_C(1) << 31, INT64_C(1) << 62, factor, &error), GS_INVALID_INPUT, "fit");
}

static void test_tensor_sets(const char *path) {
    gs_store *store = NULL;
    REQUIRE_OK(gs_store_create(path, &store, &require_error));
    float base[2][3] = {{1.5f, -2.0f, 0.25f}, {8.0f, 3.0f, 0.001f}};
    float tuned[2][3] = {{1.25f, -1.0f, 0.5f}, {8.0f, -3.0f, 0.002f}};
    uint16_t bias[2] = {0x3C00, 0xC000}; /* float16 1 and -2 */
    int64_t matrix_shape[2] = {2, 3}, bias_shape[1] = {2};
    gs_tensor tensors[2] = {{"w", GS_DTYPE_FLOAT32, 2, matrix_shape, base}, {"b", GS_DTYPE_FLOAT16, 1, bias_shape, bias}};
    int64_t version = -1;
    REQUIRE_OK(gs_store_put_tensors(store, "base", "weights", tensors, 2, "base weights", &version, &require_error));
    CHECK(version == 1, "put-tensors commits version 1, found %lld", (long long)version);
    tensors[0].data = tuned;
    REQUIRE_OK(gs_store_put_tensors(store, "tuned", "weights", tensors, 2, NULL, &version, &require_error));
    REQUIRE_OK(gs_store_delta(store, "d", "base", "tuned", "fine-tune", &version, &require_error));
    CHECK(version == 3, "the delta commits version 3, found %lld", (long long)version);

    EXPECT_ERROR(gs_store_put_tensors(store, "base", "weights", tensors, 2, NULL, NULL, &error), GS_INVALID_INPUT, "already exists");
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "delta", tensors, 2, NULL, NULL, &error), GS_INVALID_INPUT, "delta");
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", tensors, 0, NULL, NULL, &error), GS_INVALID_INPUT, "count");
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", NULL, 1, NULL, NULL, &error), GS_INVALID_INPUT, "tensors is NULL");
    gs_tensor bad = tensors[0];
    bad.dtype = 9;
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", &bad, 1, NULL, NULL, &error), GS_INVALID_INPUT, "tensors[0] (w)");
    bad = tensors[0];
    int64_t negative[2] = {2, -3}, huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    bad.shape = negative;
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", &bad, 1, NULL, NULL, &error), GS_INVALID_INPUT, "≥ 0");
    bad.shape = huge;
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", &bad, 1, NULL, NULL, &error), GS_INVALID_INPUT, "does not fit");
    bad = tensors[0];
    bad.data = NULL;
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", &bad, 1, NULL, NULL, &error), GS_INVALID_INPUT, "data is NULL");
    bad = tensors[0];
    bad.name = NULL;
    EXPECT_ERROR(gs_store_put_tensors(store, "x", "weights", &bad, 1, NULL, NULL, &error), GS_INVALID_INPUT, "name is NULL");
    EXPECT_ERROR(gs_store_delta(store, "d2", "base", "nosuch", NULL, NULL, &error), GS_NOT_FOUND, "nosuch");

    gs_snapshot *snapshot = NULL;
    REQUIRE_OK(gs_snapshot_open(store, -1, &snapshot, &require_error));
    CHECK(gs_snapshot_tensor_set_count(snapshot) == 3, "three tensor sets, found %lld", (long long)gs_snapshot_tensor_set_count(snapshot));
    const char *names[3] = {"base", "d", "tuned"};
    for (int i = 0; i < 3; i++) {
        const char *name = gs_snapshot_tensor_set_name(snapshot, i);
        CHECK(name && strcmp(name, names[i]) == 0, "tensor set %d: expected %s, found %s", i, names[i], name ? name : "(null)");
    }
    CHECK(gs_snapshot_tensor_set_name(snapshot, 3) == NULL, "tensor set name out of range is NULL");
    CHECK(gs_snapshot_tensor_set_count(NULL) == 0, "a NULL snapshot has no tensor sets");

    /* ABI 1.2: reading the stored tensors back. Tensors are sorted by name bytes: "b", "w". */
    int64_t count = -1;
    REQUIRE_OK(gs_snapshot_tensor_count(snapshot, "base", &count, &require_error));
    CHECK(count == 2, "tensor set base holds 2 tensors, found %lld", (long long)count);
    gs_tensor_view view;
    REQUIRE_OK(gs_snapshot_tensor_view(snapshot, "base", 0, &view, &require_error));
    CHECK(strcmp(view.name, "b") == 0 && view.dtype == GS_DTYPE_FLOAT16 && view.ndim == 1 && view.shape[0] == 2 &&
          view.element_count == 2 && view.reserved == 0 && (view.mapped == 0 || view.mapped == 1),
          "base[0]: expected b float16 [2], found %s dtype %d ndim %d", view.name, view.dtype, view.ndim);
    CHECK(memcmp(view.data, bias, sizeof bias) == 0, "base/b holds the float16 bits written");
    REQUIRE_OK(gs_snapshot_tensor_view(snapshot, "base", 1, &view, &require_error));
    CHECK(strcmp(view.name, "w") == 0 && view.dtype == GS_DTYPE_FLOAT32 && view.ndim == 2 && view.shape[0] == 2 &&
          view.shape[1] == 3 && view.element_count == 6,
          "base[1]: expected w float32 [2, 3], found %s dtype %d ndim %d", view.name, view.dtype, view.ndim);
    CHECK(memcmp(view.data, base, sizeof base) == 0, "base/w holds the float32 values written");
    const void *first_data = view.data;
    REQUIRE_OK(gs_snapshot_tensor_view(snapshot, "base", 1, &view, &require_error));
    CHECK(view.data == first_data, "a second view of the same tensor lends the same memory");
    /* The delta is float32 tuned - base, computed here in float32 as the engine does. */
    REQUIRE_OK(gs_snapshot_tensor_view(snapshot, "d", 1, &view, &require_error));
    const float *difference = view.data;
    int delta_ok = view.dtype == GS_DTYPE_FLOAT32 && view.element_count == 6;
    for (int i = 0; delta_ok && i < 6; i++) delta_ok = difference[i] == tuned[i / 3][i % 3] - base[i / 3][i % 3];
    CHECK(delta_ok, "d/w = tuned - base in float32");
    REQUIRE_OK(gs_snapshot_tensor_view(snapshot, "d", 0, &view, &require_error));
    CHECK(view.dtype == GS_DTYPE_FLOAT32 && ((const float *)view.data)[0] == 0.0f && ((const float *)view.data)[1] == 0.0f,
          "d/b: a float16 pair's delta is stored as float32 zeros");
    EXPECT_ERROR(gs_snapshot_tensor_count(snapshot, "nosuch", &count, &error), GS_NOT_FOUND, "nosuch");
    EXPECT_ERROR(gs_snapshot_tensor_view(snapshot, "nosuch", 0, &view, &error), GS_NOT_FOUND, "nosuch");
    EXPECT_ERROR(gs_snapshot_tensor_view(snapshot, "base", 2, &view, &error), GS_NOT_FOUND, "found index 2");
    EXPECT_ERROR(gs_snapshot_tensor_view(snapshot, "base", -1, &view, &error), GS_NOT_FOUND, "found index -1");
    EXPECT_ERROR(gs_snapshot_tensor_view(snapshot, "base", 0, NULL, &error), GS_INVALID_INPUT, "out_view is NULL");
    EXPECT_ERROR(gs_snapshot_tensor_count(snapshot, "base", NULL, &error), GS_INVALID_INPUT, "out_count is NULL");
    EXPECT_ERROR(gs_snapshot_tensor_count(snapshot, NULL, &count, &error), GS_INVALID_INPUT, "tensor_set is NULL");
    EXPECT_ERROR(gs_snapshot_tensor_count(NULL, "base", &count, &error), GS_INVALID_INPUT, "snapshot is NULL");
    gs_snapshot_close(snapshot);

    char *json = NULL;
    REQUIRE_OK(gs_store_versions_json(store, &json, &require_error));
    CHECK(json && strstr(json, "\"detail\":\"base weights\"") && strstr(json, "\"detail\":\"fine-tune\"") &&
          strstr(json, "\"version\":3") && !strstr(json, "\"version\":4") && strstr(json, "\"time\":\""),
          "versions json: %s", json ? json : "(null)");
    gs_free(json);
    EXPECT_ERROR(gs_store_versions_json(store, NULL, &error), GS_INVALID_INPUT, "out_json is NULL");
    gs_store_close(store);
}

/* A session of `store` that appended `count` rows (values from `values`) with ids `prefix`0... */
static gs_append *prepared_session(gs_store *store, const char *prefix, int count, const float *values) {
    char names[4][32];
    for (int i = 0; i < count; i++) snprintf(names[i], sizeof names[i], "%s%d", prefix, i);
    packed_text text = pack(names, count);
    gs_append *session = NULL;
    REQUIRE_OK(gs_append_begin(store, "ranked", GS_DTYPE_FLOAT32, NULL, 0, &session, &require_error));
    REQUIRE_OK(gs_append_rows(session, values, GS_DTYPE_FLOAT32, count, K, &text.text, NULL, NULL, 0, &require_error));
    unpack(&text);
    return session;
}

static void test_prepared_appends(const char *path) {
    gs_store *first = NULL, *second = NULL;
    REQUIRE_OK(gs_store_create(path, &first, &require_error));
    REQUIRE_OK(gs_store_open(path, &second, &require_error));
    static float values[6][K];
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < K; c++) values[r][c] = next_value();
    gs_append *a = prepared_session(first, "a", 3, values[0]);
    gs_append *b = prepared_session(second, "b", 2, values[3]);
    char *tokens[2] = {NULL, NULL};
    REQUIRE_OK(gs_append_prepare(a, &tokens[0], &require_error));
    REQUIRE_OK(gs_append_prepare(b, &tokens[1], &require_error));
    EXPECT_ERROR(gs_append_rows(a, values[0], GS_DTYPE_FLOAT32, 1, K, NULL, NULL, NULL, 0, &error), GS_INVALID_STATE, "prepared");
    EXPECT_ERROR(gs_append_commit(a, NULL, NULL, NULL, NULL, &error), GS_INVALID_STATE, "prepared");
    EXPECT_ERROR(gs_append_prepare(a, &tokens[0], &error), GS_INVALID_STATE, "prepared");

    /* Tokens as back-to-back C strings. */
    size_t lengths[2] = {strlen(tokens[0]) + 1, strlen(tokens[1]) + 1};
    char *joined = malloc(lengths[0] + lengths[1]);
    memcpy(joined, tokens[0], lengths[0]);
    memcpy(joined + lengths[0], tokens[1], lengths[1]);
    int64_t offsets[3] = {0, (int64_t)lengths[0], (int64_t)(lengths[0] + lengths[1])};
    gs_text both = {joined, offsets};

    /* A tampered token (a segment file outside segments/) commits nothing. */
    char *tampered = strdup(tokens[0]);
    char *file = strstr(tampered, "\"file\":\"segments/");
    CHECK(file != NULL, "the token names its segment file: %s", tokens[0]);
    if (file) memcpy(file + 8, "tmp/", 4); /* "segments/x" -> "tmp/ents/x" */
    int64_t one_offsets[2] = {0, (int64_t)strlen(tampered)};
    gs_text forged = {tampered, one_offsets};
    EXPECT_ERROR(gs_store_commit_prepared(first, &forged, 1, NULL, NULL, NULL, &error), GS_INVALID_INPUT, "segments/<32");
    free(tampered);
    EXPECT_ERROR(gs_store_commit_prepared(first, &both, 0, NULL, NULL, NULL, &error), GS_INVALID_INPUT, "count");
    EXPECT_ERROR(gs_store_commit_prepared(first, NULL, 1, NULL, NULL, NULL, &error), GS_INVALID_INPUT, "tokens is NULL");

    int64_t version = -1, added = -1;
    REQUIRE_OK(gs_store_commit_prepared(second, &both, 2, "two ranks", &version, &added, &require_error));
    CHECK(version == 1 && added == 5, "one version with both sessions' rows: version %lld, rows %lld", (long long)version, (long long)added);
    EXPECT_ERROR(gs_store_commit_prepared(first, &both, 2, NULL, NULL, NULL, &error), GS_INVALID_INPUT, "committed once");

    gs_snapshot *snapshot = NULL;
    REQUIRE_OK(gs_snapshot_open(first, -1, &snapshot, &require_error));
    int64_t live = 0, segments = 0;
    REQUIRE_OK(gs_snapshot_set_info(snapshot, "ranked", NULL, NULL, &live, &segments, &require_error));
    CHECK(live == 5 && segments == 2, "5 rows in 2 segments, found %lld in %lld", (long long)live, (long long)segments);
    int position = 0;
    for (int64_t s = 0; s < segments && s < 2; s++) {
        gs_segment_view view;
        REQUIRE_OK(gs_snapshot_segment_view(snapshot, "ranked", s, &view, &require_error));
        CHECK(memcmp(view.data, values[position], (size_t)view.rows * K * sizeof(float)) == 0, "segment %lld holds the rows in token order", (long long)s);
        position += (int)view.rows;
    }
    gs_address addresses[5] = {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}};
    gs_strings *strings = NULL;
    REQUIRE_OK(gs_snapshot_strings(snapshot, "ranked", GS_IDS, addresses, 5, &strings, &require_error));
    CHECK(strcmp(gs_strings_get(strings, 0), "a0") == 0 && strcmp(gs_strings_get(strings, 4), "b1") == 0, "ids of both sessions");
    gs_strings_free(strings);
    gs_snapshot_close(snapshot);
    gs_append_free(a);
    gs_append_free(b);
    free(joined);
    gs_free(tokens[0]);
    gs_free(tokens[1]);

    /* Freeing a prepared session keeps its segments for the token; aborting removes them. */
    gs_append *kept = prepared_session(first, "k", 1, values[5]);
    gs_append *dropped = prepared_session(first, "x", 1, values[5]);
    char *kept_token = NULL, *dropped_token = NULL;
    REQUIRE_OK(gs_append_prepare(kept, &kept_token, &require_error));
    REQUIRE_OK(gs_append_prepare(dropped, &dropped_token, &require_error));
    gs_append_free(kept);
    gs_append_abort(dropped);
    gs_append_free(dropped);
    int64_t kept_offsets[2] = {0, (int64_t)strlen(kept_token)}, dropped_offsets[2] = {0, (int64_t)strlen(dropped_token)};
    gs_text kept_text = {kept_token, kept_offsets}, dropped_text = {dropped_token, dropped_offsets};
    EXPECT_ERROR(gs_store_commit_prepared(first, &dropped_text, 1, NULL, NULL, NULL, &error), GS_CORRUPT, "does not exist");
    REQUIRE_OK(gs_store_commit_prepared(first, &kept_text, 1, NULL, &version, &added, &require_error));
    CHECK(version == 2 && added == 1, "a freed prepared session's token commits: version %lld, rows %lld", (long long)version, (long long)added);
    gs_free(kept_token);
    gs_free(dropped_token);
    gs_store_close(first);
    gs_store_close(second);
}

/* The child of the two-process test: appends two rows with ids "child0", "child1" (values
 * 100 + i) to set "ranked" of the store at `path`, prepares, prints the token on stdout and
 * exits, freeing its session (the token's segments stay for the parent to commit). */
static int prepare_child(const char *path) {
    gs_store *store = NULL;
    REQUIRE_OK(gs_store_open(path, &store, &require_error));
    float values[2][K];
    for (int i = 0; i < 2 * K; i++) values[i / K][i % K] = 100.0f + (float)i;
    char names[2][32] = {"child0", "child1"};
    packed_text text = pack(names, 2);
    gs_append *session = NULL;
    REQUIRE_OK(gs_append_begin(store, "ranked", GS_DTYPE_FLOAT32, NULL, 0, &session, &require_error));
    REQUIRE_OK(gs_append_rows(session, values, GS_DTYPE_FLOAT32, 2, K, &text.text, NULL, NULL, 0, &require_error));
    char *token = NULL;
    REQUIRE_OK(gs_append_prepare(session, &token, &require_error));
    fputs(token, stdout);
    gs_free(token);
    gs_append_free(session);
    gs_store_close(store);
    unpack(&text);
    return 0;
}

/* Runs this program again as `self --prepare-child path` (a second process with its own
 * library state) and commits its token together with one of this process: one version. */
static void test_prepared_across_processes(const char *self, const char *path) {
    int channel[2];
    CHECK(pipe(channel) == 0, "pipe");
    pid_t child = fork();
    if (child == 0) {
        dup2(channel[1], STDOUT_FILENO);
        close(channel[0]);
        close(channel[1]);
        execl(self, self, "--prepare-child", path, (char *)NULL);
        _exit(127);
    }
    close(channel[1]);
    static char token[65536];
    size_t length = 0;
    ssize_t got;
    while ((got = read(channel[0], token + length, sizeof token - 1 - length)) > 0) length += (size_t)got;
    token[length] = 0;
    close(channel[0]);
    int child_status = 0;
    waitpid(child, &child_status, 0);
    CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0 && length > 0,
          "the child prepared a token (status %d, %zu bytes)", child_status, length);

    gs_store *store = NULL;
    REQUIRE_OK(gs_store_open(path, &store, &require_error));
    int64_t before = -1, version = -1, added = -1;
    REQUIRE_OK(gs_store_latest_version(store, &before, &require_error));
    float mine[1][K];
    for (int i = 0; i < K; i++) mine[0][i] = -1.0f - (float)i;
    gs_append *session = prepared_session(store, "parent", 1, mine[0]);
    char *my_token = NULL;
    REQUIRE_OK(gs_append_prepare(session, &my_token, &require_error));
    size_t child_length = strlen(token) + 1, my_length = strlen(my_token) + 1;
    char *joined = malloc(child_length + my_length);
    memcpy(joined, token, child_length);
    memcpy(joined + child_length, my_token, my_length);
    int64_t offsets[3] = {0, (int64_t)child_length, (int64_t)(child_length + my_length)};
    gs_text both = {joined, offsets};
    REQUIRE_OK(gs_store_commit_prepared(store, &both, 2, "two processes", &version, &added, &require_error));
    CHECK(version == before + 1 && added == 3, "one version with both processes' rows: version %lld (before %lld), rows %lld",
          (long long)version, (long long)before, (long long)added);
    gs_snapshot *snapshot = NULL;
    REQUIRE_OK(gs_snapshot_open(store, version, &snapshot, &require_error));
    int64_t segments = 0;
    REQUIRE_OK(gs_snapshot_set_info(snapshot, "ranked", NULL, NULL, NULL, &segments, &require_error));
    gs_segment_view child_view, my_view;
    REQUIRE_OK(gs_snapshot_segment_view(snapshot, "ranked", segments - 2, &child_view, &require_error));
    REQUIRE_OK(gs_snapshot_segment_view(snapshot, "ranked", segments - 1, &my_view, &require_error));
    int same = child_view.rows == 2 && my_view.rows == 1;
    for (int i = 0; same && i < 2 * K; i++) same = ((const float *)child_view.data)[i] == 100.0f + (float)i;
    same = same && memcmp(my_view.data, mine, sizeof mine) == 0;
    CHECK(same, "the child's rows, then this process's, in token order");
    gs_address addresses[3] = {{segments - 2, 0}, {segments - 2, 1}, {segments - 1, 0}};
    gs_strings *strings = NULL;
    REQUIRE_OK(gs_snapshot_strings(snapshot, "ranked", GS_IDS, addresses, 3, &strings, &require_error));
    CHECK(strcmp(gs_strings_get(strings, 0), "child0") == 0 && strcmp(gs_strings_get(strings, 2), "parent0") == 0,
          "ids of both processes");
    gs_strings_free(strings);
    gs_snapshot_close(snapshot);
    gs_append_free(session);
    gs_free(my_token);
    free(joined);
    gs_store_close(store);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--prepare-child") == 0) return prepare_child(argv[2]);
    CHECK(gs_abi_version() == GS_ABI_VERSION, "library ABI %u, header %u", gs_abi_version(), GS_ABI_VERSION);
    CHECK(strcmp(gs_status_name(GS_NOT_FOUND), "NOT_FOUND") == 0, "status name %s", gs_status_name(GS_NOT_FOUND));
    CHECK(strcmp(gs_status_name(12345), "UNKNOWN") == 0, "status name %s", gs_status_name(12345));

    char directory[] = "/tmp/gradsketch-c-test-XXXXXX";
    if (!mkdtemp(directory)) { perror("mkdtemp"); return 1; }
    char path[256];
    snprintf(path, sizeof path, "%s/store", directory);

    /* ---- create and append --------------------------------------------------------------- */
    gs_store *store = NULL;
    REQUIRE_OK(gs_store_create(path, &store, &require_error));
    int64_t version = -1;
    REQUIRE_OK(gs_store_latest_version(store, &version, &require_error));
    CHECK(version == 0, "a new store is at version 0, found %lld", (long long)version);

    static float rows[ROWS][K];
    static char ids[ROWS][32], labels[ROWS][32], metadata[ROWS][32];
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < K; c++) rows[r][c] = next_value();
        snprintf(ids[r], sizeof ids[r], "row-%d", r);
        snprintf(labels[r], sizeof labels[r], "class-%d", r % 3);
        snprintf(metadata[r], sizeof metadata[r], "{\"i\":%d}", r);
    }
    packed_text id_text = pack(ids, ROWS), label_text = pack(labels, ROWS), metadata_text = pack(metadata, ROWS);

    gs_append *session = NULL;
    REQUIRE_OK(gs_append_begin(store, "train", GS_DTYPE_FLOAT32, "{\"gradient_kind\":\"test\"}", 0, &session, &require_error));
    for (int b = 0; b < BATCHES; b++) {
        /* Each batch's strings are a window of the packed buffers: offsets from BATCH * b on. */
        gs_text batch_ids = {id_text.bytes, id_text.offsets + BATCH * b};
        gs_text batch_labels = {label_text.bytes, label_text.offsets + BATCH * b};
        gs_text batch_metadata = {metadata_text.bytes, metadata_text.offsets + BATCH * b};
        REQUIRE_OK(gs_append_rows(session, rows[BATCH * b], GS_DTYPE_FLOAT32, BATCH, K, &batch_ids,
                                  &batch_labels, &batch_metadata, GS_METADATA_JSON, &require_error));
    }
    int64_t appended_rows = 0;
    gs_strings *warnings = NULL;
    REQUIRE_OK(gs_append_commit(session, "from C", &version, &appended_rows, &warnings, &require_error));
    CHECK(version == 1, "the first append commits version 1, found %lld", (long long)version);
    CHECK(appended_rows == ROWS, "expected %d rows added, found %lld", ROWS, (long long)appended_rows);
    CHECK(warnings && gs_strings_count(warnings) == 0, "expected no commit warnings");
    gs_strings_free(warnings);
    EXPECT_ERROR(gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, K, NULL, NULL, NULL, 0, &error),
                 GS_INVALID_STATE, "finished");
    gs_append_free(session);

    /* ---- snapshot, set info and the zero-copy view --------------------------------------- */
    gs_snapshot *snapshot = NULL;
    REQUIRE_OK(gs_snapshot_open(store, -1, &snapshot, &require_error));
    CHECK(gs_snapshot_version(snapshot) == 1, "latest snapshot is version 1, found %lld",
          (long long)gs_snapshot_version(snapshot));
    CHECK(gs_snapshot_set_count(snapshot) == 1, "one set, found %lld", (long long)gs_snapshot_set_count(snapshot));
    CHECK(gs_snapshot_set_name(snapshot, 0) && strcmp(gs_snapshot_set_name(snapshot, 0), "train") == 0, "set name");
    CHECK(gs_snapshot_set_name(snapshot, 1) == NULL, "set name out of range is NULL");

    int64_t k = 0, live = 0, segments = 0;
    gs_dtype dtype = 0;
    REQUIRE_OK(gs_snapshot_set_info(snapshot, "train", &k, &dtype, &live, &segments, &require_error));
    CHECK(k == K && dtype == GS_DTYPE_FLOAT32 && live == ROWS && segments >= 1,
          "set info k %lld dtype %d rows %lld segments %lld", (long long)k, dtype, (long long)live, (long long)segments);
    int64_t *segment_rows = calloc((size_t)segments, sizeof(int64_t));
    REQUIRE_OK(gs_snapshot_segment_rows(snapshot, "train", segment_rows, segments, &require_error));
    int64_t position = 0;
    for (int64_t s = 0; s < segments; s++) {
        gs_segment_view view;
        REQUIRE_OK(gs_snapshot_segment_view(snapshot, "train", s, &view, &require_error));
        CHECK(view.rows == segment_rows[s] && view.k == K && view.dtype == GS_DTYPE_FLOAT32 && view.deleted_count == 0,
              "segment %lld view: rows %lld (expected %lld) k %lld deleted %lld", (long long)s, (long long)view.rows,
              (long long)segment_rows[s], (long long)view.k, (long long)view.deleted_count);
        CHECK(position + view.rows <= ROWS && memcmp(view.data, rows[position], (size_t)view.rows * K * sizeof(float)) == 0,
              "segment %lld holds the input bytes of rows %lld..<%lld", (long long)s, (long long)position,
              (long long)(position + view.rows));
        position += view.rows;
    }
    CHECK(position == ROWS, "segments hold %lld rows, expected %d", (long long)position, ROWS);
    free(segment_rows);

    char *attributes = NULL;
    REQUIRE_OK(gs_snapshot_set_attributes(snapshot, "train", &attributes, &require_error));
    CHECK(strstr(attributes, "\"gradient_kind\"") && strstr(attributes, "\"test\""), "attributes %s", attributes);
    gs_free(attributes);

    /* ---- annotations by address ---------------------------------------------------------- */
    gs_address addresses[3] = {{0, 0}, {0, 5}, {0, 2}};
    gs_strings *strings = NULL;
    REQUIRE_OK(gs_snapshot_strings(snapshot, "train", GS_IDS, addresses, 3, &strings, &require_error));
    CHECK(gs_strings_count(strings) == 3 && strcmp(gs_strings_get(strings, 1), "row-5") == 0 &&
          strcmp(gs_strings_get(strings, 2), "row-2") == 0, "ids by address");
    gs_text packed = gs_strings_packed(strings);
    CHECK(packed.offsets[0] == 0 && packed.offsets[3] == 18 && memcmp(packed.bytes, "row-0\0row-5\0row-2\0", 18) == 0,
          "packed ids: back-to-back NUL-terminated strings, offsets[3] = %lld", (long long)packed.offsets[3]);
    gs_strings_free(strings);
    REQUIRE_OK(gs_snapshot_strings(snapshot, "train", GS_LABELS, addresses, 3, &strings, &require_error));
    CHECK(strcmp(gs_strings_get(strings, 1), "class-2") == 0, "label of row 5: %s", gs_strings_get(strings, 1));
    gs_strings_free(strings);

    /* ---- exact top-k against a double-precision oracle ----------------------------------- */
    float queries[QUERIES][K];
    for (int q = 0; q < QUERIES; q++)
        for (int c = 0; c < K; c++) queries[q][c] = next_value();
    int all_live[ROWS];
    for (int r = 0; r < ROWS; r++) all_live[r] = 1;

    gs_query_params params;
    gs_query_params_init(&params);
    params.top_k = TOP;
    params.index = GS_INDEX_EXACT;
    gs_result *result = NULL;
    REQUIRE_OK(gs_snapshot_query(snapshot, "train", &queries[0][0], QUERIES, K, &params, &result, &require_error));
    CHECK(gs_result_list_count(result) == QUERIES, "one list per query, found %lld", (long long)gs_result_list_count(result));
    CHECK(gs_result_hit_count(result) == QUERIES * TOP, "hits %lld", (long long)gs_result_hit_count(result));
    CHECK(gs_result_version(result) == 1, "result version %lld", (long long)gs_result_version(result));
    CHECK(gs_result_plan_json(result) && strstr(gs_result_plan_json(result), "\"exact\""), "plan %s", gs_result_plan_json(result));
    for (int q = 0; q < QUERIES; q++) {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) scores[r] = dot(rows[r], queries[q]);
        oracle_top(scores, all_live, ROWS, TOP, expected);
        char what[64];
        snprintf(what, sizeof what, "inner-product query %d", q);
        check_hits(result, q, expected, scores, TOP, what);
    }
    /* Hit addresses read back the hit ids; labels come with the hits. */
    {
        const gs_address *hit_addresses = gs_result_addresses(result);
        REQUIRE_OK(gs_snapshot_strings(snapshot, "train", GS_IDS, hit_addresses, gs_result_hit_count(result), &strings, &require_error));
        for (int64_t h = 0; h < gs_result_hit_count(result); h++) {
            CHECK(strcmp(gs_strings_get(strings, h), gs_strings_get(gs_result_ids(result), h)) == 0, "address of hit %lld", (long long)h);
            int row = atoi(gs_strings_get(strings, h) + 4);
            char label[32];
            snprintf(label, sizeof label, "class-%d", row % 3);
            CHECK(gs_result_labels(result) && strcmp(gs_strings_get(gs_result_labels(result), h), label) == 0, "label of hit %lld", (long long)h);
        }
        gs_strings_free(strings);
        /* A borrowed list is not the caller's to free: this must be a no-op. */
        gs_strings_free((gs_strings *)gs_result_ids(result));
    }
    gs_result_free(result);

    params.metric = GS_METRIC_COSINE;
    REQUIRE_OK(gs_snapshot_query(snapshot, "train", queries[1], 1, K, &params, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) scores[r] = dot(rows[r], queries[1]) / (norm(rows[r]) * norm(queries[1]));
        oracle_top(scores, all_live, ROWS, TOP, expected);
        check_hits(result, 0, expected, scores, TOP, "cosine query");
    }
    gs_result_free(result);

    /* Three queries aggregated by the mean of their scores: one list. */
    params.metric = GS_METRIC_IP;
    params.aggregation = GS_AGGREGATE_MEAN;
    REQUIRE_OK(gs_snapshot_query(snapshot, "train", &queries[0][0], QUERIES, K, &params, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) {
            scores[r] = 0;
            for (int q = 0; q < QUERIES; q++) scores[r] += dot(rows[r], queries[q]) / QUERIES;
        }
        oracle_top(scores, all_live, ROWS, TOP, expected);
        CHECK(gs_result_list_count(result) == 1, "an aggregated query has one list, found %lld",
              (long long)gs_result_list_count(result));
        check_hits(result, 0, expected, scores, TOP, "mean-aggregated query");
    }
    gs_result_free(result);
    params.aggregation = GS_AGGREGATE_NONE;

    /* A stored row as the query, named by its id. */
    REQUIRE_OK(gs_snapshot_query_by(snapshot, "train", GS_SOURCE_ROW, "row-5", &params, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) scores[r] = dot(rows[r], rows[5]);
        oracle_top(scores, all_live, ROWS, TOP, expected);
        check_hits(result, 0, expected, scores, TOP, "query by stored row");
    }
    gs_result_free(result);

    /* Smallest first. */
    params.smallest = 1;
    REQUIRE_OK(gs_snapshot_query(snapshot, "train", queries[0], 1, K, &params, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) scores[r] = -dot(rows[r], queries[0]);
        oracle_top(scores, all_live, ROWS, TOP, expected);
        for (int r = 0; r < ROWS; r++) scores[r] = -scores[r];
        check_hits(result, 0, expected, scores, TOP, "smallest-first query");
    }
    gs_result_free(result);
    params.smallest = 0;

    /* ---- one snapshot, many threads (Spec/c-api.md §6) ----------------------------------- */
    {
        enum { THREADS = 4 };
        worker workers[THREADS];
        pthread_t threads[THREADS];
        for (int t = 0; t < THREADS; t++) {
            double scores[ROWS];
            int expected[1];
            for (int r = 0; r < ROWS; r++) scores[r] = dot(rows[r], queries[t % QUERIES]);
            oracle_top(scores, all_live, ROWS, 1, expected);
            workers[t].snapshot = snapshot;
            workers[t].query = queries[t % QUERIES];
            snprintf(workers[t].expected_first, sizeof workers[t].expected_first, "row-%d", expected[0]);
            CHECK(pthread_create(&threads[t], NULL, query_worker, &workers[t]) == 0, "pthread_create %d", t);
        }
        for (int t = 0; t < THREADS; t++) {
            pthread_join(threads[t], NULL);
            CHECK(workers[t].ok, "thread %d: concurrent queries on one snapshot gave the oracle's answer", t);
        }
    }

    /* ---- selections ---------------------------------------------------------------------- */
    gs_select_params select;
    gs_select_params_init(&select);
    select.method = GS_SELECT_TOP_K;
    select.count = TOP;
    REQUIRE_OK(gs_snapshot_select(snapshot, "train", queries[2], K, NULL, 0, &select, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP];
        for (int r = 0; r < ROWS; r++) scores[r] = dot(rows[r], queries[2]) / (norm(rows[r]) * norm(queries[2]));
        oracle_top(scores, all_live, ROWS, TOP, expected);
        check_hits(result, 0, expected, scores, TOP, "top-k selection");
    }
    gs_result_free(result);

    select.method = GS_SELECT_GREEDY;
    REQUIRE_OK(gs_snapshot_select(snapshot, "train", queries[2], K, NULL, 0, &select, &result, &require_error));
    {
        /* SELECT: repeatedly the row maximising cos(S + s_i, q), S the sum of rows picked. */
        double sum[K] = {0};
        int taken[ROWS] = {0};
        const gs_strings *hit_ids = gs_result_ids(result);
        CHECK(gs_result_hit_count(result) == TOP, "greedy selects %d rows, found %lld", TOP, (long long)gs_result_hit_count(result));
        for (int t = 0; t < TOP && t < gs_result_hit_count(result); t++) {
            int best = -1;
            double best_score = -2;
            for (int r = 0; r < ROWS; r++) {
                if (taken[r]) continue;
                double candidate[K], d = 0, n = 0, qn = 0;
                for (int c = 0; c < K; c++) {
                    candidate[c] = sum[c] + rows[r][c];
                    d += candidate[c] * queries[2][c];
                    n += candidate[c] * candidate[c];
                    qn += (double)queries[2][c] * queries[2][c];
                }
                double score = d / (sqrt(n) * sqrt(qn));
                if (score > best_score) { best_score = score; best = r; }
            }
            taken[best] = 1;
            for (int c = 0; c < K; c++) sum[c] += rows[best][c];
            char want[32];
            snprintf(want, sizeof want, "row-%d", best);
            CHECK(strcmp(gs_strings_get(hit_ids, t), want) == 0, "greedy pick %d: expected %s, found %s", t, want,
                  gs_strings_get(hit_ids, t));
        }
    }
    gs_result_free(result);

    /* ---- delete through a transaction; the old snapshot still sees every row ------------- */
    char deleted_ids[2][32] = {"row-3", "row-30"};
    packed_text delete_text = pack(deleted_ids, 2);
    REQUIRE_OK(gs_store_delete(store, "train", &delete_text.text, 2, &version, &require_error));
    unpack(&delete_text);
    CHECK(version == 2, "the delete commits version 2, found %lld", (long long)version);
    REQUIRE_OK(gs_snapshot_set_info(snapshot, "train", NULL, NULL, &live, NULL, &require_error));
    CHECK(live == ROWS, "version 1 keeps %d live rows, found %lld", ROWS, (long long)live);

    gs_snapshot *after = NULL;
    REQUIRE_OK(gs_snapshot_open(store, -1, &after, &require_error));
    REQUIRE_OK(gs_snapshot_set_info(after, "train", NULL, NULL, &live, &segments, &require_error));
    CHECK(live == ROWS - 2, "version 2 has %d live rows, found %lld", ROWS - 2, (long long)live);
    {
        int64_t deleted_seen = 0, first_row = 0;
        int deleted_ok = 1;
        for (int64_t s = 0; s < segments; s++) {
            gs_segment_view view;
            REQUIRE_OK(gs_snapshot_segment_view(after, "train", s, &view, &require_error));
            for (int64_t d = 0; d < view.deleted_count; d++) {
                int64_t row = first_row + view.deleted[d];
                deleted_ok &= (row == 3 || row == 30);
                deleted_seen++;
            }
            first_row += view.rows;
        }
        CHECK(deleted_seen == 2 && deleted_ok, "views list rows 3 and 30 as deleted (%lld listed)", (long long)deleted_seen);
    }
    /* The query closest to row 3 no longer finds it; the oracle skips deleted rows. */
    params.metric = GS_METRIC_IP;
    REQUIRE_OK(gs_snapshot_query(after, "train", rows[3], 1, K, &params, &result, &require_error));
    {
        double scores[ROWS];
        int expected[TOP], live_rows[ROWS];
        for (int r = 0; r < ROWS; r++) { scores[r] = dot(rows[r], rows[3]); live_rows[r] = r != 3 && r != 30; }
        oracle_top(scores, live_rows, ROWS, TOP, expected);
        check_hits(result, 0, expected, scores, TOP, "query after delete");
    }
    gs_result_free(result);
    gs_snapshot_close(after);

    /* ---- abort leaves no version --------------------------------------------------------- */
    REQUIRE_OK(gs_append_begin(store, "train", GS_DTYPE_AUTO, NULL, 0, &session, &require_error));
    char more_ids[1][32] = {"extra-0"};
    packed_text more = pack(more_ids, 1);
    REQUIRE_OK(gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, K, &more.text, NULL, NULL, 0, &require_error));
    gs_append_abort(session);
    gs_append_free(session);
    unpack(&more);
    REQUIRE_OK(gs_store_latest_version(store, &version, &require_error));
    CHECK(version == 2, "an aborted session commits nothing: latest is %lld, expected 2", (long long)version);

    /* float64 input is stored as float32, rounded once. */
    {
        double wide[2][K];
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < K; c++) wide[r][c] = (double)next_value() / 3.0;
        char wide_ids[2][32] = {"wide-0", "wide-1"};
        packed_text wide_text = pack(wide_ids, 2);
        REQUIRE_OK(gs_append_begin(store, "wide", GS_DTYPE_AUTO, NULL, 0, &session, &require_error));
        REQUIRE_OK(gs_append_rows(session, wide, GS_DTYPE_FLOAT64, 2, K, &wide_text.text, NULL, NULL, 0, &require_error));
        REQUIRE_OK(gs_append_commit(session, NULL, &version, NULL, NULL, &require_error));
        gs_append_free(session);
        unpack(&wide_text);
        REQUIRE_OK(gs_snapshot_open(store, version, &after, &require_error));
        gs_segment_view view;
        REQUIRE_OK(gs_snapshot_segment_view(after, "wide", 0, &view, &require_error));
        int same = view.dtype == GS_DTYPE_FLOAT32 && view.rows == 2;
        for (int i = 0; same && i < 2 * K; i++) same = ((const float *)view.data)[i] == (float)wide[i / K][i % K];
        CHECK(same, "float64 rows are stored as their float32 rounding");
        gs_snapshot_close(after);
    }

    /* ---- verify ------------------------------------------------------------------------- */
    gs_verify_report *report = NULL;
    REQUIRE_OK(gs_store_verify(store, &report, &require_error));
    CHECK(gs_verify_report_clean(report) && gs_verify_report_problem_count(report) == 0 &&
          gs_verify_report_files_checked(report) > 0 && gs_verify_report_bytes_checked(report) > 0,
          "verify: clean %d, problems %lld, files %lld", gs_verify_report_clean(report),
          (long long)gs_verify_report_problem_count(report), (long long)gs_verify_report_files_checked(report));
    CHECK(gs_verify_report_problem(report, 0) == NULL, "no problem 0 in a clean report");
    gs_verify_report_free(report);

    /* ---- error paths --------------------------------------------------------------------- */
    gs_store *missing = NULL;
    EXPECT_ERROR(gs_store_open("/nonexistent/gradsketch-store", &missing, &error), GS_NOT_A_STORE, "/nonexistent/gradsketch-store");
    EXPECT_ERROR(gs_store_open(NULL, &missing, &error), GS_INVALID_INPUT, "path is NULL");
    EXPECT_ERROR(gs_store_open(path, NULL, &error), GS_INVALID_INPUT, "out_store is NULL");
    EXPECT_ERROR(gs_store_create(path, &missing, &error), GS_INVALID_INPUT, "existing content");
    CHECK(gs_store_open(NULL, &missing, NULL) == GS_INVALID_INPUT, "a NULL error pointer is allowed");
    EXPECT_ERROR(gs_store_latest_version(NULL, &version, &error), GS_INVALID_INPUT, "store is NULL");
    EXPECT_ERROR(gs_store_latest_version((gs_store *)snapshot, &version, &error), GS_INVALID_INPUT, "not a store handle");
    EXPECT_ERROR(gs_snapshot_open(store, 99, &after, &error), GS_NOT_FOUND, "99");
    EXPECT_ERROR(gs_snapshot_open(store, -2, &after, &error), GS_INVALID_INPUT, "-2");
    EXPECT_ERROR(gs_snapshot_set_info(snapshot, "nosuchset", &k, NULL, NULL, NULL, &error), GS_NOT_FOUND, "nosuchset");
    EXPECT_ERROR(gs_snapshot_set_info(NULL, "train", &k, NULL, NULL, NULL, &error), GS_INVALID_INPUT, "snapshot is NULL");
    EXPECT_ERROR(gs_snapshot_segment_view(snapshot, "train", 1000, &(gs_segment_view){0}, &error), GS_NOT_FOUND, "1000");
    EXPECT_ERROR(gs_snapshot_query(snapshot, "nosuchset", queries[0], 1, K, &params, &result, &error), GS_NOT_FOUND, "nosuchset");
    EXPECT_ERROR(gs_snapshot_query(snapshot, "train", queries[0], 1, K / 2, &params, &result, &error), GS_INVALID_INPUT, "16");
    EXPECT_ERROR(gs_snapshot_query(snapshot, "train", NULL, 1, K, &params, &result, &error), GS_INVALID_INPUT, "vectors is NULL");
    EXPECT_ERROR(gs_snapshot_query(snapshot, "train", queries[0], 1, 0, &params, &result, &error), GS_INVALID_INPUT, "k ≥ 1");
    params.metric = 7;
    EXPECT_ERROR(gs_snapshot_query(snapshot, "train", queries[0], 1, K, &params, &result, &error), GS_INVALID_INPUT, "metric");
    params.metric = GS_METRIC_IP;
    params.struct_size = 8;
    EXPECT_ERROR(gs_snapshot_query(snapshot, "train", queries[0], 1, K, &params, &result, &error), GS_INVALID_INPUT, "struct_size");
    gs_query_params_init(&params);
    EXPECT_ERROR(gs_snapshot_query_by(snapshot, "train", GS_SOURCE_ROW, "no-such-row", &params, &result, &error), GS_NOT_FOUND, "no-such-row");
    EXPECT_ERROR(gs_snapshot_select(snapshot, "train", NULL, K, NULL, 0, &select, &result, &error), GS_INVALID_INPUT, "neither");
    EXPECT_ERROR(gs_snapshot_select(snapshot, "train", queries[0], K / 2, NULL, 0, &select, &result, &error), GS_INVALID_INPUT, "16");
    select.count = ROWS + 1;
    EXPECT_ERROR(gs_snapshot_select(snapshot, "train", queries[0], K, NULL, 0, &select, &result, &error), GS_INVALID_INPUT, "49");
    select.count = TOP;
    select.method = 42;
    EXPECT_ERROR(gs_snapshot_select(snapshot, "train", queries[0], K, NULL, 0, &select, &result, &error), GS_INVALID_INPUT, "method");
    select.method = GS_SELECT_TOP_K;

    REQUIRE_OK(gs_append_begin(store, "train", GS_DTYPE_AUTO, NULL, 0, &session, &require_error));
    char one_id[1][32] = {"new-0"};
    packed_text one = pack(one_id, 1);
    EXPECT_ERROR(gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, 0, &one.text, NULL, NULL, 0, &error), GS_INVALID_INPUT, "k ≥ 1");
    EXPECT_ERROR(gs_append_rows(session, rows[0], 99, 1, K, &one.text, NULL, NULL, 0, &error), GS_INVALID_INPUT, "99");
    EXPECT_ERROR(gs_append_rows(session, NULL, GS_DTYPE_FLOAT32, 1, K, &one.text, NULL, NULL, 0, &error), GS_INVALID_INPUT, "rows is NULL");
    EXPECT_ERROR(gs_append_rows(NULL, rows[0], GS_DTYPE_FLOAT32, 1, K, &one.text, NULL, NULL, 0, &error), GS_INVALID_INPUT, "session is NULL");
    {
        /* A row width other than the set's k fails at the append or at the commit. */
        gs_status status = GS_OK;
        char *error = NULL;
        status = gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, K / 2, &one.text, NULL, NULL, 0, &error);
        if (status == GS_OK) status = gs_append_commit(session, NULL, NULL, NULL, NULL, &error);
        expect_error(status, error, GS_INVALID_INPUT, "16", "append with the wrong k", __LINE__);
    }
    gs_append_free(session);
    unpack(&one);
    REQUIRE_OK(gs_append_begin(store, "train", GS_DTYPE_AUTO, NULL, 0, &session, &require_error));
    {
        char taken_id[1][32] = {"row-1"};
        packed_text taken = pack(taken_id, 1);
        gs_status status = GS_OK;
        char *error = NULL;
        status = gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, K, &taken.text, NULL, NULL, 0, &error);
        if (status == GS_OK) status = gs_append_commit(session, NULL, NULL, NULL, NULL, &error);
        expect_error(status, error, GS_INVALID_INPUT, "row-1", "append of an existing id", __LINE__);
        unpack(&taken);
    }
    gs_append_free(session);
    REQUIRE_OK(gs_append_begin(store, "train", GS_DTYPE_AUTO, NULL, 0, &session, &require_error));
    {
        int64_t backwards_offsets[2] = {4, 2};
        gs_text backwards = {"abcdef", backwards_offsets};
        EXPECT_ERROR(gs_append_rows(session, rows[0], GS_DTYPE_FLOAT32, 1, K, &backwards, NULL, NULL, 0, &error),
                     GS_INVALID_INPUT, "non-decreasing");
    }
    gs_append_free(session);
    EXPECT_ERROR(gs_append_begin(store, "bad name!", GS_DTYPE_AUTO, NULL, 0, &session, &error), GS_INVALID_INPUT, "bad name!");
    EXPECT_ERROR(gs_append_begin(store, "train", 7, NULL, 0, &session, &error), GS_INVALID_INPUT, "stored_dtype");
    EXPECT_ERROR(gs_append_begin(store, "train", GS_DTYPE_AUTO, "[1]", 0, &session, &error), GS_INVALID_INPUT, "JSON object");
    char gone_id[1][32] = {"no-such-row"};
    packed_text gone = pack(gone_id, 1);
    EXPECT_ERROR(gs_store_delete(store, "train", &gone.text, 1, NULL, &error), GS_NOT_FOUND, "no-such-row");
    unpack(&gone);
    REQUIRE_OK(gs_store_latest_version(store, &version, &require_error));
    CHECK(version == 3, "failed writes commit nothing: latest is %lld, expected 3", (long long)version);

    gs_snapshot_close(snapshot);
    gs_store_close(store);

    /* ---- ABI 1.1: projection factors, tensor sets, versions, prepared appends ------------- */
    test_projection_factors();
    char more_path[256];
    snprintf(more_path, sizeof more_path, "%s/tensors", directory);
    test_tensor_sets(more_path);
    snprintf(more_path, sizeof more_path, "%s/prepared", directory);
    test_prepared_appends(more_path);
    test_prepared_across_processes(argv[0], more_path);
    unpack(&id_text);
    unpack(&label_text);
    unpack(&metadata_text);
    /* Releasing NULL is allowed everywhere. */
    gs_store_close(NULL);
    gs_snapshot_close(NULL);
    gs_append_free(NULL);
    gs_result_free(NULL);
    gs_strings_free(NULL);
    gs_verify_report_free(NULL);
    gs_free(NULL);

    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", directory);
    if (system(command) != 0) fprintf(stderr, "warning: could not remove %s\n", directory);

    printf("test_gradsketch: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
