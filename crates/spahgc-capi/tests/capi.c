/* C tests of libspahgc, built with -Wall -Wextra -Werror and run by tests/c.rs against the .so
 * and the .a. Usage: capi GROUP ARGS...; each group prints what it checked and exits 0 on
 * success.
 *   bad BUNDLE CORRUPT_BUNDLE SLIDE VERSION CACHE_DIR
 *                                            bad inputs and one small pixel prediction, through an
 *                                            embedding cache (warm, it keeps valgrind runs short)
 *   uaf BUNDLE                               use after close / free (not under valgrind)
 *   predict BUNDLE IMAGE MPP X Y W H CSV     a region compared with the CLI's CSV ("-": none)
 *   cancel BUNDLE SLIDE                      cancellation from a second thread
 *   threads BUNDLE SLIDE                     4 threads predicting with one engine
 *   soak BUNDLE SLIDE CACHE_DIR SECONDS      8 threads for SECONDS: same answers, flat memory */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spahgc.h"

static int checks = 0;

#define FAIL(...)                                                                 \
    do {                                                                          \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                           \
        fprintf(stderr, __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                    \
        exit(1);                                                                  \
    } while (0)

#define CHECK(cond)                                                               \
    do {                                                                          \
        checks++;                                                                 \
        if (!(cond)) FAIL("check failed: %s", #cond);                             \
    } while (0)

/* A call that must succeed. */
#define OK(call)                                                                  \
    do {                                                                          \
        spahgc_status s_ = (call);                                                \
        checks++;                                                                 \
        if (s_ != SPAHGC_STATUS_OK)                                               \
            FAIL("%s returned %u: %s", #call, (unsigned)s_, spahgc_last_error()); \
    } while (0)

/* A call that must fail with `expected` and a message. */
#define EXPECT(call, expected)                                                    \
    do {                                                                          \
        spahgc_status s_ = (call);                                                \
        checks++;                                                                 \
        if (s_ != (expected))                                                     \
            FAIL("%s returned %u, expected %u (%s)", #call, (unsigned)s_,         \
                 (unsigned)(expected), spahgc_last_error());                      \
        if (spahgc_last_error()[0] == '\0') FAIL("%s left no message", #call);    \
    } while (0)

static spahgc_engine *open_cached(const char *bundle, const char *cache_dir) {
    spahgc_engine_options options = spahgc_engine_options_default();
    options.device = SPAHGC_DEVICE_CPU;
    options.cache_dir = cache_dir;
    spahgc_engine *engine = NULL;
    OK(spahgc_engine_open(bundle, &options, &engine));
    CHECK(engine != NULL);
    return engine;
}

static spahgc_engine *open_cpu(const char *bundle) { return open_cached(bundle, NULL); }

static size_t spots_of(const spahgc_result *r) {
    size_t n = 0;
    OK(spahgc_result_spot_count(r, &n));
    return n;
}

static size_t genes_of(const spahgc_result *r) {
    size_t g = 0;
    OK(spahgc_result_gene_count(r, &g));
    return g;
}

static float *values_of(const spahgc_result *r) {
    size_t len = spots_of(r) * genes_of(r);
    float *values = malloc(len * sizeof *values);
    CHECK(values != NULL);
    OK(spahgc_result_values(r, values, len));
    return values;
}

/* ------------------------------------------------------------------ bad inputs */

/* A small pinkish buffer: a few spots of "tissue" at 10 µm per pixel. */
#define PX_W 60
#define PX_H 40
static uint8_t pixels[PX_H * PX_W * 4];

static void fill_pixels(void) {
    for (size_t i = 0; i < sizeof pixels; i += 4) {
        pixels[i] = 200, pixels[i + 1] = 120, pixels[i + 2] = 190, pixels[i + 3] = 255;
    }
}

static void test_bad(const char *bundle, const char *corrupt, const char *slide, const char *version,
                     const char *cache_dir) {
    CHECK(spahgc_abi_version() == SPAHGC_ABI_VERSION);
    CHECK(strcmp(spahgc_version(), version) == 0);
    CHECK(spahgc_last_error() != NULL);

    spahgc_engine *const SENTINEL = (spahgc_engine *)&checks;
    spahgc_engine *engine = SENTINEL;
    spahgc_engine_options options = spahgc_engine_options_default();
    EXPECT(spahgc_engine_open(NULL, NULL, &engine), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_open(bundle, NULL, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_open("", NULL, &engine), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_engine_open("/tmp/\xff\xfe", NULL, &engine), SPAHGC_STATUS_INVALID_UTF8);
    EXPECT(spahgc_engine_open("/nonexistent/spahgc-bundle", NULL, &engine), SPAHGC_STATUS_BUNDLE);
    EXPECT(spahgc_engine_open(corrupt, NULL, &engine), SPAHGC_STATUS_BUNDLE);
    options.device = 99;
    EXPECT(spahgc_engine_open(bundle, &options, &engine), SPAHGC_STATUS_INVALID_ARGUMENT);
    options = spahgc_engine_options_default();
    options.cache_dir = "/tmp/\xff";
    EXPECT(spahgc_engine_open(bundle, &options, &engine), SPAHGC_STATUS_INVALID_UTF8);
    options = spahgc_engine_options_default();
    options.runtime_dir = "/nonexistent/spahgc-runtime";
    EXPECT(spahgc_engine_open(bundle, &options, &engine), SPAHGC_STATUS_INVALID_ARGUMENT);
    CHECK(engine == SENTINEL); /* outputs are written only on success */
    spahgc_engine_close(NULL);
    spahgc_cancel_token_free(NULL);
    spahgc_result_free(NULL);

    engine = open_cached(bundle, cache_dir);
    CHECK(spahgc_last_error()[0] == '\0');
    size_t genes = 0;
    const char *name = NULL;
    EXPECT(spahgc_engine_gene_count(NULL, &genes), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_gene_count(engine, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    OK(spahgc_engine_gene_count(engine, &genes));
    CHECK(genes > 0);
    EXPECT(spahgc_engine_gene_name(NULL, 0, &name), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_gene_name(engine, 0, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_gene_name(engine, genes, &name), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_engine_gene_name(engine, SIZE_MAX, &name), SPAHGC_STATUS_INVALID_ARGUMENT);
    CHECK(name == NULL);

    spahgc_result *result = NULL;
    spahgc_region region = {0, 0, 100, 100};
    EXPECT(spahgc_predict_region(NULL, slide, &region, 0, false, NULL, &result), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, NULL, &region, 0, false, NULL, &result), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, slide, &region, 0, false, NULL, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, "/tmp/\xc3\x28.svs", &region, 0, false, NULL, &result),
           SPAHGC_STATUS_INVALID_UTF8);
    EXPECT(spahgc_predict_region(engine, "/nonexistent/slide.svs", &region, 0, false, NULL, &result),
           SPAHGC_STATUS_SLIDE);
    EXPECT(spahgc_predict_region(engine, slide, &region, -1, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, slide, &region, NAN, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    spahgc_region empty = {0, 0, 0, 100}, nan = {NAN, 0, 100, 100}, negative = {0, 0, 100, -5};
    EXPECT(spahgc_predict_region(engine, slide, &empty, 0, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, slide, &nan, 0, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_predict_region(engine, slide, &negative, 0, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    spahgc_region outside = {1e7, 1e7, 100, 100};
    EXPECT(spahgc_predict_region(engine, slide, &outside, 0, false, NULL, &result), SPAHGC_STATUS_INVALID_ARGUMENT);
    spahgc_region context = {0};
    EXPECT(spahgc_engine_pixel_context(engine, NULL, 1, &context), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_engine_pixel_context(engine, &region, 0, &context), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(spahgc_engine_pixel_context(engine, &region, 1, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    OK(spahgc_engine_pixel_context(engine, &region, 1, &context));
    /* Whole pixels, never left of or above the slide, and the whole first grid block (12 spots
     * of 200 px at 1 µm/px) with its patches. */
    CHECK(context.x >= 0 && context.y >= 0 && context.x == floor(context.x) && context.y == floor(context.y));
    CHECK(context.x < 100 && context.y < 100 && context.width > 11 * 200 && context.height > 11 * 200);

    fill_pixels();
    const size_t stride = PX_W * 4, len = sizeof pixels;
    const uint32_t rgba = SPAHGC_PIXEL_FORMAT_RGBA8;
#define PIXELS(p, l, w, h, s, f, m) spahgc_predict_pixels(engine, p, l, w, h, s, f, m, 0, 0, NULL, false, NULL, &result)
    EXPECT(PIXELS(NULL, len, PX_W, PX_H, stride, rgba, 10), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(PIXELS(pixels, 0, PX_W, PX_H, stride, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, 0, PX_H, stride, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, PX_W, 0, stride, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, PX_W, PX_H, stride - 1, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len - 1, PX_W, PX_H, stride, rgba, 10), SPAHGC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(PIXELS(pixels, len, UINT32_MAX, PX_H, stride, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, PX_W, UINT32_MAX, SIZE_MAX / 2, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, SIZE_MAX, PX_W, PX_H, stride, rgba, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, PX_W, PX_H, stride, 7, 10), SPAHGC_STATUS_INVALID_ARGUMENT);
    EXPECT(PIXELS(pixels, len, PX_W, PX_H, stride, rgba, 0), SPAHGC_STATUS_INVALID_ARGUMENT);
    /* An origin whose buffer ends past 2^53, the largest coordinate (found by fuzzing). */
    EXPECT(spahgc_predict_pixels(engine, pixels, len, PX_W, PX_H, stride, rgba, 10, UINT64_MAX - 2, 0, NULL, false,
                                 NULL, &result),
           SPAHGC_STATUS_INVALID_ARGUMENT);
    CHECK(result == NULL);
#undef PIXELS

    /* A small region of the slide, its embeddings from the cache once warm. */
    spahgc_region small = {0, 0, 800, 800};
    OK(spahgc_predict_region(engine, slide, &small, 0, false, NULL, &result));
    CHECK(result != NULL);

    size_t n = spots_of(result), g = genes_of(result);
    CHECK(n > 0 && g == genes);
    size_t count = 0;
    EXPECT(spahgc_result_spot_count(NULL, &count), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_spot_count(result, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_gene_count(NULL, &count), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_gene_count(result, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    double diameter = 0, mpp = 0;
    EXPECT(spahgc_result_grid(NULL, &diameter, &mpp), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_grid(result, NULL, &mpp), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_grid(result, &diameter, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    OK(spahgc_result_grid(result, &diameter, &mpp));
    CHECK(mpp > 0.4 && mpp < 0.6 && diameter > 0);
    const char *id = NULL;
    EXPECT(spahgc_result_spot_id(NULL, 0, &id), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_spot_id(result, 0, NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_spot_id(result, n, &id), SPAHGC_STATUS_INVALID_ARGUMENT);
    OK(spahgc_result_spot_id(result, n - 1, &id));
    CHECK(id != NULL && strchr(id, 'x') != NULL);

    /* Buffers one element too small: an error, and nothing written (canaries intact). */
    const float CANARY = -12345.0f;
    size_t values_len = n * g;
    float *values = malloc((values_len + 1) * sizeof *values);
    CHECK(values != NULL);
    for (size_t i = 0; i <= values_len; i++) values[i] = CANARY;
    EXPECT(spahgc_result_values(NULL, values, values_len), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_values(result, NULL, values_len), SPAHGC_STATUS_NULL_ARGUMENT);
    EXPECT(spahgc_result_values(result, values, values_len - 1), SPAHGC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(spahgc_result_values(result, values, 0), SPAHGC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(spahgc_result_values(result, (float *)(void *)((char *)values + 1), values_len),
           SPAHGC_STATUS_INVALID_ARGUMENT);
    for (size_t i = 0; i <= values_len; i++) CHECK(values[i] == CANARY);
    OK(spahgc_result_values(result, values, values_len));
    for (size_t i = 0; i < values_len; i++) CHECK(isfinite(values[i]) && values[i] >= 0);
    CHECK(values[values_len] == CANARY);
    free(values);

    double *centres = malloc((2 * n + 1) * sizeof *centres);
    CHECK(centres != NULL);
    for (size_t i = 0; i <= 2 * n; i++) centres[i] = CANARY;
    EXPECT(spahgc_result_centres(result, centres, 2 * n - 1), SPAHGC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(spahgc_result_centres(result, NULL, 2 * n), SPAHGC_STATUS_NULL_ARGUMENT);
    for (size_t i = 0; i <= 2 * n; i++) CHECK(centres[i] == CANARY);
    OK(spahgc_result_centres(result, centres, 2 * n));
    for (size_t i = 0; i < n; i++) CHECK(centres[2 * i] >= 0 && centres[2 * i] < small.width);
    CHECK(centres[2 * n] == CANARY);
    free(centres);

    bool *tissue = malloc(n + 1);
    CHECK(tissue != NULL);
    memset(tissue, 0, n + 1);
    EXPECT(spahgc_result_in_tissue(result, tissue, n - 1), SPAHGC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(spahgc_result_in_tissue(result, NULL, n), SPAHGC_STATUS_NULL_ARGUMENT);
    OK(spahgc_result_in_tissue(result, tissue, n));
    free(tissue);

    EXPECT(spahgc_cancel_token_cancel(NULL), SPAHGC_STATUS_NULL_ARGUMENT);
    spahgc_result_free(result);
    spahgc_engine_close(engine);
    printf("bad inputs: %d checks passed\n", checks);
}

/* ------------------------------------------------------------------ use after free */

static void test_uaf(const char *bundle) {
    spahgc_engine *engine = open_cpu(bundle);
    spahgc_engine_close(engine);
    size_t genes = 0;
    EXPECT(spahgc_engine_gene_count(engine, &genes), SPAHGC_STATUS_INVALID_HANDLE);
    spahgc_engine_close(engine); /* a double close is detected, not a crash */
    CHECK(spahgc_last_error()[0] != '\0');
    spahgc_cancel_token *token = spahgc_cancel_token_new();
    CHECK(token != NULL);
    spahgc_cancel_token_free(token);
    EXPECT(spahgc_cancel_token_cancel(token), SPAHGC_STATUS_INVALID_HANDLE);
    printf("use after free: %d checks passed\n", checks);
}

/* ------------------------------------------------------------------ prediction vs the CLI */

struct progress {
    size_t calls, last_done, last_total;
    int bad;
};

static void on_progress(void *user, size_t done, size_t total) {
    struct progress *p = user;
    if (done > total || done < p->last_done) p->bad = 1;
    p->calls++, p->last_done = done, p->last_total = total;
}

/* Compares a result with the CLI's expression.csv: same spots in the same order, values within
 * 1e-4 (the CSV has 4 decimals). */
static void compare_csv(const spahgc_result *r, const spahgc_engine *engine, const char *csv) {
    FILE *f = fopen(csv, "r");
    if (!f) FAIL("cannot open %s", csv);
    size_t n = spots_of(r), g = genes_of(r);
    float *values = values_of(r);
    static char line[1 << 16];
    CHECK(fgets(line, sizeof line, f) != NULL);
    /* Header: spot,x,y,in_tissue,<genes...> in the engine's order. */
    char *field = strtok(line, ",\n");
    for (int i = 0; i < 3; i++) field = strtok(NULL, ",\n");
    for (size_t j = 0; j < g; j++) {
        const char *name = NULL;
        OK(spahgc_engine_gene_name(engine, j, &name));
        field = strtok(NULL, ",\n");
        if (!field || strcmp(field, name) != 0) FAIL("CSV column %zu is %s, expected %s", j, field, name);
    }
    double max_diff = 0;
    size_t rows = 0;
    while (fgets(line, sizeof line, f)) {
        if (rows >= n) FAIL("the CSV has more than the result's %zu spots", n);
        const char *id = NULL;
        OK(spahgc_result_spot_id(r, rows, &id));
        field = strtok(line, ",\n");
        if (strcmp(field, id) != 0) FAIL("CSV row %zu is spot %s, the result's is %s", rows, field, id);
        for (int i = 0; i < 3; i++) field = strtok(NULL, ",\n");
        for (size_t j = 0; j < g; j++) {
            field = strtok(NULL, ",\n");
            CHECK(field != NULL);
            double diff = fabs(strtod(field, NULL) - values[rows * g + j]);
            if (diff > max_diff) max_diff = diff;
        }
        rows++;
    }
    fclose(f);
    free(values);
    CHECK(rows == n);
    printf("compared %zu spots x %zu genes with %s: max abs diff %.2e\n", n, g, csv, max_diff);
    CHECK(max_diff <= 1e-4);
}

static void test_predict(char **argv) {
    const char *bundle = argv[0], *image = argv[1], *csv = argv[7];
    double mpp = atof(argv[2]);
    spahgc_region region = {atof(argv[3]), atof(argv[4]), atof(argv[5]), atof(argv[6])};
    spahgc_engine *engine = open_cpu(bundle);

    size_t genes = 0;
    OK(spahgc_engine_gene_count(engine, &genes));
    int has_erbb2 = 0;
    for (size_t j = 0; j < genes; j++) {
        const char *name = NULL;
        OK(spahgc_engine_gene_name(engine, j, &name));
        CHECK(name != NULL && name[0] != '\0');
        has_erbb2 |= strcmp(name, "ERBB2") == 0;
    }
    CHECK(has_erbb2);
    printf("genes: %zu, ERBB2 among them\n", genes);

    struct progress progress = {0};
    spahgc_request request = {0};
    request.progress = on_progress;
    request.progress_user = &progress;
    spahgc_result *result = NULL;
    OK(spahgc_predict_region(engine, image, &region, mpp, false, &request, &result));
    CHECK(progress.calls > 0 && !progress.bad && progress.last_done == progress.last_total);
    printf("progress: %zu calls, %zu of %zu spots embedded\n", progress.calls, progress.last_done,
           progress.last_total);
    if (strcmp(csv, "-") != 0) compare_csv(result, engine, csv);
    spahgc_result_free(result);

    /* A host's pixels: a pinkish buffer at 10 µm per pixel. */
    fill_pixels();
    OK(spahgc_predict_pixels(engine, pixels, sizeof pixels, PX_W, PX_H, PX_W * 4, SPAHGC_PIXEL_FORMAT_RGBA8, 10, 0,
                             0, NULL, false, NULL, &result));
    double diameter = 0, buffer_mpp = 0;
    OK(spahgc_result_grid(result, &diameter, &buffer_mpp));
    CHECK(spots_of(result) > 0 && buffer_mpp == 10);
    printf("pixel buffer: %zu spots\n", spots_of(result));
    spahgc_result_free(result);
    spahgc_engine_close(engine);
}

/* ------------------------------------------------------------------ cancellation */

static void *cancel_thread(void *token) {
    return (void *)(uintptr_t)spahgc_cancel_token_cancel(token);
}

struct canceller {
    spahgc_cancel_token *token;
    size_t calls;
};

/* On the first batch, a second thread raises the token (and is joined, so the flag is up
 * before the engine's next check). */
static void cancel_on_progress(void *user, size_t done, size_t total) {
    (void)done, (void)total;
    struct canceller *c = user;
    if (c->calls++ > 0) return;
    pthread_t thread;
    void *status = NULL;
    if (pthread_create(&thread, NULL, cancel_thread, c->token) != 0) FAIL("pthread_create");
    pthread_join(thread, &status);
    if ((uintptr_t)status != SPAHGC_STATUS_OK) FAIL("cancelling from a thread failed");
}

static void test_cancel(const char *bundle, const char *slide) {
    spahgc_engine *engine = open_cpu(bundle);
    struct canceller c = {spahgc_cancel_token_new(), 0};
    CHECK(c.token != NULL);
    spahgc_request request = {c.token, cancel_on_progress, &c};
    spahgc_result *result = NULL;
    EXPECT(spahgc_predict_region(engine, slide, NULL, 0, false, &request, &result), SPAHGC_STATUS_CANCELLED);
    CHECK(result == NULL && c.calls >= 1);
    /* A raised token ends later requests at once. */
    EXPECT(spahgc_predict_region(engine, slide, NULL, 0, false, &request, &result), SPAHGC_STATUS_CANCELLED);
    spahgc_cancel_token_free(c.token);
    /* The engine still works. */
    OK(spahgc_predict_region(engine, slide, NULL, 0, false, NULL, &result));
    CHECK(spots_of(result) > 0);
    spahgc_result_free(result);
    spahgc_engine_close(engine);
    printf("cancellation: %d checks passed\n", checks);
}

/* ------------------------------------------------------------------ threads */

struct job {
    const spahgc_engine *engine;
    const char *slide;
    spahgc_region region;
    spahgc_result *result;
    spahgc_status status;
};

static void *predict_thread(void *arg) {
    struct job *job = arg;
    job->status = spahgc_predict_region(job->engine, job->slide, &job->region, 0, false, NULL, &job->result);
    return NULL;
}

static void test_threads(const char *bundle, const char *slide) {
    spahgc_engine *engine = open_cpu(bundle);
    enum { THREADS = 4 };
    struct job jobs[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        /* Two pairs of overlapping regions. */
        spahgc_region region = {t % 2 == 0 ? 0 : 600, 0, 1600, 2400};
        jobs[t] = (struct job){engine, slide, region, NULL, SPAHGC_STATUS_INTERNAL};
        if (pthread_create(&threads[t], NULL, predict_thread, &jobs[t]) != 0) FAIL("pthread_create");
    }
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        if (jobs[t].status != SPAHGC_STATUS_OK) FAIL("thread %d: status %u", t, (unsigned)jobs[t].status);
    }
    /* The same region gives the same values on every thread, and alone. */
    spahgc_result *alone = NULL;
    OK(spahgc_predict_region(engine, slide, &jobs[0].region, 0, false, NULL, &alone));
    for (int t = 0; t < THREADS; t++) {
        const spahgc_result *same = t % 2 == 0 ? alone : jobs[t % 2].result;
        size_t len = spots_of(same) * genes_of(same);
        CHECK(spots_of(jobs[t].result) * genes_of(jobs[t].result) == len);
        float *a = values_of(same), *b = values_of(jobs[t].result);
        for (size_t i = 0; i < len; i++) CHECK(fabsf(a[i] - b[i]) <= 1e-5f);
        free(a), free(b);
    }
    for (int t = 0; t < THREADS; t++) spahgc_result_free(jobs[t].result);
    spahgc_result_free(alone);
    spahgc_engine_close(engine);
    printf("threads: %d predictions on one engine agree\n", THREADS);
}

/* ------------------------------------------------------------------ soak */

enum { SOAK_THREADS = 8, SOAK_REGIONS = 4 };

struct soak {
    const spahgc_engine *engine;
    const char *slide;
    spahgc_region regions[SOAK_REGIONS];
    float *expected[SOAK_REGIONS];
    size_t expected_len[SOAK_REGIONS];
    double deadline;
    size_t answered[SOAK_THREADS], cancelled[SOAK_THREADS], gene_names[SOAK_THREADS];
};

struct soaker {
    struct soak *soak;
    unsigned index;
};

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* This process's resident anonymous memory (RssAnon: heap and stacks, not mapped files) in KiB. */
static long resident_kib(void) {
    FILE *status = fopen("/proc/self/status", "r");
    if (!status) FAIL("cannot read /proc/self/status");
    char line[256];
    long kib = -1;
    while (kib < 0 && fgets(line, sizeof line, status)) sscanf(line, "RssAnon: %ld kB", &kib);
    fclose(status);
    return kib;
}

/* Regions (the same four as the reference), gene names and pre-cancelled requests in turn until
 * the deadline; every answer must equal the sequential one. */
static void *soak_thread(void *arg) {
    struct soaker *me = arg;
    struct soak *s = me->soak;
    spahgc_cancel_token *raised = spahgc_cancel_token_new();
    OK(spahgc_cancel_token_cancel(raised));
    spahgc_request cancelled = {raised, NULL, NULL};
    for (unsigned turn = me->index; seconds_now() < s->deadline; turn += SOAK_THREADS + 1) {
        unsigned job = turn % SOAK_REGIONS;
        spahgc_result *result = NULL;
        if (turn % 5 == 0) {
            size_t count = 0;
            const char *name = NULL;
            OK(spahgc_engine_gene_count(s->engine, &count));
            OK(spahgc_engine_gene_name(s->engine, turn % count, &name));
            if (!name || !name[0]) FAIL("gene %u has no name", turn % (unsigned)count);
            s->gene_names[me->index]++;
        } else if (turn % 5 == 1) {
            spahgc_status status =
                spahgc_predict_region(s->engine, s->slide, &s->regions[job], 0, false, &cancelled, &result);
            if (status != SPAHGC_STATUS_CANCELLED || result) FAIL("a cancelled request returned %u", (unsigned)status);
            s->cancelled[me->index]++;
        } else {
            OK(spahgc_predict_region(s->engine, s->slide, &s->regions[job], 0, false, NULL, &result));
            size_t len = spots_of(result) * genes_of(result);
            if (len != s->expected_len[job]) FAIL("region %u: %zu values, expected %zu", job, len, s->expected_len[job]);
            float *values = values_of(result);
            for (size_t i = 0; i < len; i++) {
                if (fabsf(values[i] - s->expected[job][i]) > 1e-5f) FAIL("region %u differs at value %zu", job, i);
            }
            free(values);
            spahgc_result_free(result);
            s->answered[me->index]++;
        }
    }
    spahgc_cancel_token_free(raised);
    return NULL;
}

/* Eight threads on one engine (disk cache bounded below what the regions need, so entries are
 * evicted while others read them) for `seconds`; resident memory after the warm-up (the first
 * third) may grow by less than 5 % by the end. */
static void test_soak(const char *bundle, const char *slide, const char *cache_dir, double seconds) {
    spahgc_engine_options options = spahgc_engine_options_default();
    options.device = SPAHGC_DEVICE_CPU;
    options.cache_dir = cache_dir;
    options.cache_max_bytes = 1 << 20;
    spahgc_engine *engine = NULL;
    OK(spahgc_engine_open(bundle, &options, &engine));
    struct soak s = {.engine = engine, .slide = slide};
    for (unsigned r = 0; r < SOAK_REGIONS; r++) {
        s.regions[r] = (spahgc_region){400.0 + 300.0 * r, 500.0 + 150.0 * (r % 2), 700, 700};
        spahgc_result *result = NULL;
        OK(spahgc_predict_region(engine, slide, &s.regions[r], 0, false, NULL, &result));
        s.expected_len[r] = spots_of(result) * genes_of(result);
        CHECK(s.expected_len[r] > 0);
        s.expected[r] = values_of(result);
        spahgc_result_free(result);
    }
    double start = seconds_now();
    s.deadline = start + seconds;
    struct soaker soakers[SOAK_THREADS];
    pthread_t threads[SOAK_THREADS];
    for (unsigned t = 0; t < SOAK_THREADS; t++) {
        soakers[t] = (struct soaker){&s, t};
        if (pthread_create(&threads[t], NULL, soak_thread, &soakers[t]) != 0) FAIL("pthread_create");
    }
    /* Requests in flight swing resident memory; a leak raises its floor. The floor from a third
     * to half of the run is compared with that of its last sixth. */
    long warm = LONG_MAX, end = LONG_MAX;
    const struct timespec quarter_second = {0, 250000000};
    for (double now = seconds_now(); now < s.deadline; now = seconds_now()) {
        nanosleep(&quarter_second, NULL);
        double part = (now - start) / seconds;
        long kib = resident_kib();
        if (part >= 1.0 / 3.0 && part < 0.5 && kib < warm) warm = kib;
        if (part >= 5.0 / 6.0 && kib < end) end = kib;
    }
    for (unsigned t = 0; t < SOAK_THREADS; t++) pthread_join(threads[t], NULL);
    size_t answered = 0, cancelled = 0, gene_names = 0;
    for (unsigned t = 0; t < SOAK_THREADS; t++) {
        answered += s.answered[t], cancelled += s.cancelled[t], gene_names += s.gene_names[t];
    }
    printf("soak: %d threads, %.0f s: %zu answered, %zu cancelled, %zu gene names; resident floor %.1f MiB "
           "after warm-up, %.1f MiB at the end\n",
           SOAK_THREADS, seconds_now() - start, answered, cancelled, gene_names, warm / 1024.0, end / 1024.0);
    CHECK(answered >= SOAK_REGIONS);
    if ((double)end > (double)warm * 1.05) FAIL("resident memory grew from %ld to %ld KiB", warm, end);
    for (unsigned r = 0; r < SOAK_REGIONS; r++) free(s.expected[r]);
    spahgc_engine_close(engine);
}

int main(int argc, char **argv) {
    if (argc >= 7 && strcmp(argv[1], "bad") == 0) {
        test_bad(argv[2], argv[3], argv[4], argv[5], argv[6]);
    } else if (argc >= 3 && strcmp(argv[1], "uaf") == 0) {
        test_uaf(argv[2]);
    } else if (argc >= 10 && strcmp(argv[1], "predict") == 0) {
        test_predict(argv + 2);
    } else if (argc >= 4 && strcmp(argv[1], "cancel") == 0) {
        test_cancel(argv[2], argv[3]);
    } else if (argc >= 4 && strcmp(argv[1], "threads") == 0) {
        test_threads(argv[2], argv[3]);
    } else if (argc >= 6 && strcmp(argv[1], "soak") == 0) {
        test_soak(argv[2], argv[3], argv[4], atof(argv[5]));
    } else {
        fprintf(stderr, "usage: capi bad|uaf|predict|cancel|threads|soak ARGS...\n");
        return 2;
    }
    return 0;
}
