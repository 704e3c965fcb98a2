#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_countdown = -1;
static atomic_ulong alloc_calls;

static int should_fail(void)
{
    atomic_fetch_add(&alloc_calls, 1);
    long n = atomic_load(&fail_countdown);
    if (n < 0)
        return 0;
    if (n == 0)
        return 1;
    atomic_fetch_sub(&fail_countdown, 1);
    return 0;
}

void gw_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }
unsigned long gw_alloc_count(void) { return atomic_load(&alloc_calls); }

void *gw_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }
void *gw_calloc(size_t c, size_t n) { return should_fail() ? NULL : calloc(c ? c : 1, n ? n : 1); }
void *gw_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }
void gw_free(void *p) { free(p); }

char *gw_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = gw_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *gw_strdup(const char *s) { return s ? gw_strndup(s, strlen(s)) : NULL; }
