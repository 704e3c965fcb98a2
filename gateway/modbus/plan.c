/* Read coalescing and exception splitting. See plan.h. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "../error.h"

#define ALIGN16(x) (((x) + 15u) & ~(size_t)15u)

static int span_cmp(const void *a, const void *b)
{
    const gw_plan_span *x = a, *y = b;
    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    if (x->count != y->count)
        return x->count < y->count ? -1 : 1;
    return 0;
}

static unsigned span_end(const gw_plan_span *s)
{
    return (unsigned)s->address + s->count; /* exclusive, may be 65536 */
}

static unsigned limit_for(const gw_plan *plan, gw_mb_table t)
{
    if (gw_mb_table_is_bits(t)) {
        int l = plan->profile->max_read_bits;
        return (l > 0 && l < GW_MB_MAX_BITS) ? (unsigned)l : GW_MB_MAX_BITS;
    }
    int l = plan->profile->max_read_registers;
    return (l > 0 && l < GW_MB_MAX_REGS) ? (unsigned)l : GW_MB_MAX_REGS;
}

static unsigned gap_for(const gw_plan *plan, gw_mb_table t)
{
    return gw_mb_table_is_bits(t) ? (unsigned)plan->max_gap * 16u : (unsigned)plan->max_gap;
}

/* Recompute read address/count from its spans, and every read's data offset. */
static void layout(gw_plan *plan)
{
    size_t off = 0;
    for (size_t i = 0; i < plan->n_reads; i++) {
        gw_plan_read *r = &plan->reads[i];
        const gw_plan_span *s = &plan->spans[r->first_span];
        unsigned end = 0;
        for (size_t k = 0; k < r->n_spans; k++)
            if (span_end(&s[k]) > end)
                end = span_end(&s[k]);
        r->table = s->table;
        r->address = s->address;
        r->count = (uint16_t)(end - s->address);
        r->data_off = off;
        off += r->count;
    }
    plan->data_words = off;
}

/* Cache every point's (and decimal register's) location for the current reads. */
static void index_points(gw_plan *plan)
{
    for (size_t i = 0; i < plan->profile->n_points; i++) {
        size_t spans[2] = {plan->point_span[i], plan->dp_span[i]};
        gw_plan_loc *locs[2] = {&plan->point_loc[i], &plan->dp_loc[i]};
        for (int k = 0; k < 2; k++) {
            size_t r, off;
            *locs[k] = (gw_plan_loc){GW_PLAN_NOLOC, 0, 0};
            if (gw_plan_locate(plan, spans[k], &r, &off) == 0)
                *locs[k] = (gw_plan_loc){(uint32_t)r, (uint32_t)(plan->reads[r].data_off + off),
                                         (uint32_t)(plan->reads[r].count - off)};
        }
    }
}

/* Index of span equal to key (the first one; duplicates are kept and all equal). */
static size_t find_span(const gw_plan *plan, gw_mb_table t, uint16_t addr, uint16_t count)
{
    gw_plan_span key = {t, addr, count};
    const gw_plan_span *hit = bsearch(&key, plan->spans, plan->n_spans, sizeof key, span_cmp);
    return hit ? (size_t)(hit - plan->spans) : SIZE_MAX;
}

int gw_plan_build(const gw_profile *p, int max_gap, gw_plan **out)
{
    *out = NULL;
    if (!p || p->n_points == 0)
        return GW_EINVAL;
    size_t n = p->n_points;
    for (size_t i = 0; i < p->n_points; i++)
        if (p->points[i].has_dp)
            n++;
    /* One block, the parts a poll cycle reads first (reads, locations), then the spans:
     * 1,000 devices' plans are cold each cycle, and one block is a few adjacent cache
     * lines instead of seven scattered allocations. */
    size_t o_reads = ALIGN16(sizeof(gw_plan)), o_ploc = o_reads + ALIGN16(n * sizeof(gw_plan_read));
    size_t o_dloc = o_ploc + ALIGN16(p->n_points * sizeof(gw_plan_loc));
    size_t o_spans = o_dloc + ALIGN16(p->n_points * sizeof(gw_plan_loc));
    size_t o_pspan = o_spans + ALIGN16(n * sizeof(gw_plan_span));
    size_t o_dspan = o_pspan + ALIGN16(p->n_points * sizeof(size_t));
    size_t total = o_dspan + ALIGN16(p->n_points * sizeof(size_t));
    unsigned char *blk = gw_calloc(1, total);
    if (!blk)
        return GW_ENOMEM;
    gw_plan *plan = (gw_plan *)blk;
    plan->reads = (gw_plan_read *)(blk + o_reads);
    plan->point_loc = (gw_plan_loc *)(blk + o_ploc);
    plan->dp_loc = (gw_plan_loc *)(blk + o_dloc);
    plan->spans = (gw_plan_span *)(blk + o_spans);
    plan->point_span = (size_t *)(blk + o_pspan);
    plan->dp_span = (size_t *)(blk + o_dspan);
    plan->profile = p;
    plan->max_gap = p->max_gap >= 0 ? p->max_gap : (max_gap < 0 ? 0 : max_gap);
    if (plan->max_gap > GW_MB_MAX_REGS)
        plan->max_gap = GW_MB_MAX_REGS;

    plan->cap_reads = n;

    size_t k = 0;
    for (size_t i = 0; i < p->n_points; i++) {
        const gw_profile_point *pt = &p->points[i];
        plan->spans[k++] = (gw_plan_span){pt->table, pt->address, pt->count};
        if (pt->has_dp)
            plan->spans[k++] = (gw_plan_span){pt->dp_table, pt->dp_address, 1};
    }
    plan->n_spans = k;
    qsort(plan->spans, k, sizeof *plan->spans, span_cmp);
    for (size_t i = 0; i < p->n_points; i++) {
        const gw_profile_point *pt = &p->points[i];
        plan->point_span[i] = find_span(plan, pt->table, pt->address, pt->count);
        plan->dp_span[i] = pt->has_dp ? find_span(plan, pt->dp_table, pt->dp_address, 1) : SIZE_MAX;
    }

    /* Greedy merge in address order: optimal in read count for interval spans under a
     * length cap and a gap bound (each read extends as far as it may). */
    size_t nr = 0;
    for (size_t i = 0; i < k;) {
        const gw_plan_span *s = &plan->spans[i];
        unsigned start = s->address, end = span_end(s);
        unsigned lim = limit_for(plan, s->table), gap = gap_for(plan, s->table);
        size_t j = i + 1;
        while (j < k) {
            const gw_plan_span *t = &plan->spans[j];
            if (t->table != s->table)
                break;
            unsigned t_end = span_end(t);
            unsigned new_end = t_end > end ? t_end : end;
            if (t->address > end && t->address - end > gap)
                break;
            if (new_end - start > lim)
                break;
            end = new_end;
            j++;
        }
        plan->reads[nr++] = (gw_plan_read){s->table, (uint16_t)start, 0, i, j - i, 0, 0};
        i = j;
    }
    plan->n_reads = nr;
    layout(plan);
    index_points(plan);
    *out = plan;
    return 0;
}

void gw_plan_free(gw_plan *plan)
{
    gw_free(plan); /* one block (gw_plan_build) */
}

int gw_plan_split(gw_plan *plan, size_t i)
{
    if (!plan || i >= plan->n_reads)
        return GW_EINVAL;
    gw_plan_read *r = &plan->reads[i];
    if (r->n_spans < 2 || plan->n_reads >= plan->cap_reads)
        return GW_EINVAL;

    /* Candidate cuts are between span k-1 and k where nothing before k reaches past
     * span k's start (so the halves do not overlap). Prefer the widest hole: the
     * unimplemented address is most likely in it; among equal holes take the one
     * nearest the middle so a repeated split converges in log steps. */
    const gw_plan_span *s = &plan->spans[r->first_span];
    size_t best = 0;
    long best_hole = -1, best_dist = 0;
    unsigned reach = span_end(&s[0]);
    for (size_t k = 1; k < r->n_spans; k++) {
        if (s[k].address >= reach) {
            long hole = (long)s[k].address - (long)reach;
            long mid = (long)r->n_spans / 2;
            long dist = (long)k > mid ? (long)k - mid : mid - (long)k;
            if (hole > best_hole || (hole == best_hole && dist < best_dist)) {
                best = k;
                best_hole = hole;
                best_dist = dist;
            }
        }
        if (span_end(&s[k]) > reach)
            reach = span_end(&s[k]);
    }
    if (best == 0)
        return GW_EINVAL;

    memmove(&plan->reads[i + 2], &plan->reads[i + 1],
            (plan->n_reads - i - 1) * sizeof *plan->reads);
    plan->n_reads++;
    gw_plan_read first = plan->reads[i];
    gw_plan_read second = first;
    first.n_spans = best;
    second.first_span = first.first_span + best;
    second.n_spans = plan->reads[i].n_spans - best;
    first.splits++;
    second.splits++;
    plan->reads[i] = first;
    plan->reads[i + 1] = second;
    layout(plan);
    index_points(plan);
    return 0;
}

int gw_plan_locate(const gw_plan *plan, size_t span, size_t *read, size_t *offset)
{
    if (!plan || span >= plan->n_spans)
        return GW_EINVAL;
    /* Reads cover consecutive span ranges in order: binary search on first_span. */
    size_t lo = 0, hi = plan->n_reads;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const gw_plan_read *r = &plan->reads[mid];
        if (span < r->first_span)
            hi = mid;
        else if (span >= r->first_span + r->n_spans)
            lo = mid + 1;
        else {
            *read = mid;
            *offset = plan->spans[span].address - r->address;
            return 0;
        }
    }
    return GW_ENOTFOUND;
}

size_t gw_plan_requested(const gw_plan *plan)
{
    size_t n = 0;
    for (size_t i = 0; plan && i < plan->n_reads; i++)
        n += plan->reads[i].count;
    return n;
}
