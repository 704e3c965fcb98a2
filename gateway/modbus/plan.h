/* Read plans: which Modbus requests fetch every point of one profile, as few as possible.
 *
 * Every point (and every decimal-point register) is a span (table, address, count).
 * Spans are sorted per table and merged into one read while the hole between them is at
 * most max_gap registers (max_gap * 16 bits for coil / discrete tables, a register's
 * worth of bits) and the read stays within the limits: 125 registers / 2000 bits per
 * request (MODBUS_MAX_READ_REGISTERS / _BITS), or the profile's smaller
 * max_read_registers / max_read_bits.
 *
 * A device may refuse a merged read that covers an address it does not implement
 * (exception 02 ILLEGAL DATA ADDRESS or 03 ILLEGAL DATA VALUE). gw_plan_split() then
 * replaces that read with two reads, cut at the widest hole (or the middle span
 * boundary when there is none); the plan keeps the split for later cycles, so the
 * layout that works is remembered and the device is never asked the failing range
 * again. A read of a single span cannot be split: its points are unreadable.
 *
 * Ownership: a plan is built from a profile that must outlive it. Thread: a plan
 * belongs to the one thread polling its device (the poller hands it over with the
 * device); no locking inside. */
#ifndef CITYGATE_MODBUS_PLAN_H
#define CITYGATE_MODBUS_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "profile.h"

#define GW_MB_MAX_REGS 125  /* per FC03/FC04 request */
#define GW_MB_MAX_BITS 2000 /* per FC01/FC02 request */

typedef struct gw_plan_span {
    gw_mb_table table;
    uint16_t address;
    uint16_t count;
} gw_plan_span;

typedef struct gw_plan_read {
    gw_mb_table table;
    uint16_t address;
    uint16_t count;           /* registers or bits requested */
    size_t first_span, n_spans; /* the sorted spans this read covers */
    size_t data_off;          /* offset of this read's words in the device's data buffer */
    int splits;               /* how many times the read this came from was split */
} gw_plan_read;

/* Where one point's words sit once the device answered: cached by the plan so a poll
 * cycle does not search for them (recomputed at build and after every split). */
typedef struct gw_plan_loc {
    uint32_t read;  /* index into reads; GW_PLAN_NOLOC when the point has no such span */
    uint32_t word;  /* its first word in the device's data buffer (read's data_off + offset) */
    uint32_t avail; /* words from there to the end of that read */
} gw_plan_loc;
#define GW_PLAN_NOLOC UINT32_MAX

typedef struct gw_plan {
    const gw_profile *profile;     /* borrowed */
    gw_plan_span *spans;           /* sorted (table, address, count) */
    size_t n_spans;
    size_t *point_span;            /* point i -> its span index */
    size_t *dp_span;               /* point i -> span index of its decimal register, or SIZE_MAX */
    gw_plan_loc *point_loc;        /* point i -> where its words are (the current reads) */
    gw_plan_loc *dp_loc;           /* point i -> where its decimal register is, or NOLOC */
    gw_plan_read *reads;
    size_t n_reads, cap_reads;     /* cap_reads == n_spans: a plan never has more reads */
    size_t data_words;             /* sum of read counts: size of the data buffer */
    int max_gap;
} gw_plan;

/* Build the plan for profile p with the given gap (the bus's max_gap, unless the
 * profile overrides it with its own "max_gap"). Returns 0 with *out, GW_EINVAL, or
 * GW_ENOMEM. */
int gw_plan_build(const gw_profile *p, int max_gap, gw_plan **out);
void gw_plan_free(gw_plan *plan);

/* Split read i in two (see above). Returns 0 (reads i and i+1 now replace the old
 * read i; later reads move up by one) or GW_EINVAL when read i covers a single span
 * or the spans it covers overlap so that no cut exists. */
int gw_plan_split(gw_plan *plan, size_t i);

/* Where span s sits: the read holding it and its word offset inside that read.
 * point_loc / dp_loc hold the same answer for every point, precomputed. */
int gw_plan_locate(const gw_plan *plan, size_t span, size_t *read, size_t *offset);

/* Total registers + bits the plan requests per cycle (useful in logs and benches). */
size_t gw_plan_requested(const gw_plan *plan);

#endif
