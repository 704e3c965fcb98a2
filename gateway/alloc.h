/* The one allocator seam. Everything the core frees comes from here, so tests can
 * fail the Nth allocation (gw_alloc_fail_after) and check for no crash and no leak.
 * Thread: any. */
#ifndef CITYGATE_ALLOC_H
#define CITYGATE_ALLOC_H

#include <stddef.h>

void *gw_malloc(size_t n);
void *gw_calloc(size_t count, size_t n);
void *gw_realloc(void *p, size_t n);
void gw_free(void *p);
/* Copy of s (NULL gives NULL); freed with gw_free. */
char *gw_strdup(const char *s);
char *gw_strndup(const char *s, size_t n);

/* Testing: make the allocation after the next n succeed-calls fail (n < 0: never). */
void gw_alloc_fail_after(long n);
/* Testing: number of allocations made so far. */
unsigned long gw_alloc_count(void);

#endif
