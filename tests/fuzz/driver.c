/* A small stand-alone driver for libFuzzer-style targets, so the fuzz tier runs under
 * gcc and the sanitizer build without clang: every file of the corpus directories is
 * fed as is, then random mutations of them (bit flips, byte sets, truncation, splices,
 * duplication) for -seconds=N (default 10) with a fixed seed (-seed=N), so a failure
 * reproduces. A crash or sanitizer report fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (64 * 1024)

typedef struct { uint8_t *data; size_t size; } input;

static input *corpus;
static size_t n_corpus, cap_corpus;

static void add_input(const uint8_t *d, size_t n)
{
    if (n_corpus == cap_corpus) {
        cap_corpus = cap_corpus ? cap_corpus * 2 : 64;
        corpus = realloc(corpus, cap_corpus * sizeof *corpus);
        if (!corpus)
            abort();
    }
    corpus[n_corpus].data = malloc(n ? n : 1);
    if (!corpus[n_corpus].data)
        abort();
    memcpy(corpus[n_corpus].data, d, n);
    corpus[n_corpus].size = n;
    n_corpus++;
}

static void load_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    uint8_t *buf = malloc(FUZZ_MAX_INPUT);
    size_t n = fread(buf, 1, FUZZ_MAX_INPUT, f);
    fclose(f);
    add_input(buf, n);
    free(buf);
}

static void load_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        load_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        load_file(p);
    }
    closedir(d);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t mutate(uint8_t *buf, size_t n, size_t cap)
{
    int rounds = 1 + (int)(rnd() % 4);
    static const char *tokens[] = {"{", "}", "[", "]", "\"", ":", ",", "null", "true",
                                   "1e308", "-1", "\\u0000", "\n", "0x7FFF", "NaN"};
    for (int r = 0; r < rounds; r++) {
        switch (rnd() % 7) {
        case 0: if (n) buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: if (n) buf[rnd() % n] = (uint8_t)rnd(); break;
        case 2: if (n) n = rnd() % n; break;
        case 3: { /* insert a token */
            const char *t = tokens[rnd() % (sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t), at = n ? rnd() % (n + 1) : 0;
            if (n + tl <= cap) {
                memmove(buf + at + tl, buf + at, n - at);
                memcpy(buf + at, t, tl);
                n += tl;
            }
            break;
        }
        case 4: { /* splice from another input */
            if (!n_corpus) break;
            input *o = &corpus[rnd() % n_corpus];
            if (!o->size) break;
            size_t from = rnd() % o->size, len = 1 + rnd() % (o->size - from);
            size_t at = n ? rnd() % n : 0;
            if (at + len > cap) len = cap - at;
            memcpy(buf + at, o->data + from, len);
            if (at + len > n) n = at + len;
            break;
        }
        case 5: { /* duplicate a chunk */
            if (!n) break;
            size_t from = rnd() % n, len = 1 + rnd() % (n - from);
            if (n + len <= cap) {
                memmove(buf + from + len, buf + from, n - from);
                n += len;
            }
            break;
        }
        default: if (n) buf[rnd() % n] = (uint8_t)"0123456789.-+e"[rnd() % 14]; break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    double seconds = 10;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-seconds=", 9) == 0)
            seconds = atof(argv[i] + 9);
        else if (strncmp(argv[i], "-seed=", 6) == 0)
            rng_state = strtoull(argv[i] + 6, NULL, 10) | 1;
        else
            load_path(argv[i]);
    }
    if (n_corpus == 0)
        add_input((const uint8_t *)"", 0);
    for (size_t i = 0; i < n_corpus; i++)
        LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].size);
    uint8_t *buf = malloc(FUZZ_MAX_INPUT);
    unsigned long runs = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        input *base = &corpus[rnd() % n_corpus];
        memcpy(buf, base->data, base->size);
        size_t n = mutate(buf, base->size, FUZZ_MAX_INPUT);
        /* Targets get an exact-size copy so ASan catches reads one past the end. */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        runs++;
        if ((runs & 63) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
                break;
        }
    }
    printf("fuzz: %zu corpus inputs, %lu mutated runs, no crash\n", n_corpus, runs);
    free(buf);
    for (size_t i = 0; i < n_corpus; i++)
        free(corpus[i].data);
    free(corpus);
    return 0;
}
