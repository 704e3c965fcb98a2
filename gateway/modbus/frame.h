/* Modbus TCP framing of the poller's reads (FC01..FC04), with every field of an answer
 * checked: libmodbus 3.1.6 accepts a TCP answer with another unit id, or with an MBAP
 * length field that does not match the bytes of the PDU, and takes the values from it.
 * The poller builds its own requests (its own transaction ids) and hands each answer
 * to gw_mbframe_tcp_parse, which accepts it only when all of these agree:
 *   transaction id == the request's      protocol id == 0
 *   MBAP length == unit + PDU bytes      unit id == the request's
 *   function code == the request's (or it | 0x80 with an exception code 1..255)
 *   byte count == what the quantity asked needs (2 per register, 1 per 8 bits).
 * Pure functions: no I/O, no state (the transport is in poller.c), fuzzed by
 * tests/fuzz/fuzz_modbus_response.c. Thread: any. */
#ifndef CITYGATE_MODBUS_FRAME_H
#define CITYGATE_MODBUS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "profile.h"

#define GW_MBF_TCP_REQ_LEN 12  /* MBAP (7) + function + address + quantity */
#define GW_MBF_TCP_HEAD 9      /* MBAP (7) + function + byte count / exception code */
#define GW_MBF_TCP_MAX_ADU 260 /* MBAP (7) + 253-byte PDU */

/* The function code that reads table t (1..4). */
uint8_t gw_mbframe_function(gw_mb_table t);

/* Write the request ADU reading count registers / bits of table t at address into out.
 * Returns GW_MBF_TCP_REQ_LEN. */
size_t gw_mbframe_tcp_request(uint8_t out[GW_MBF_TCP_REQ_LEN], uint16_t tid, uint8_t unit,
                              gw_mb_table t, uint16_t address, uint16_t count);

/* From the first GW_MBF_TCP_HEAD bytes of an answer: how many bytes the whole answer has
 * (by its function code and byte count, as a reader must know before it has them all).
 * Returns 9..GW_MBF_TCP_MAX_ADU, or GW_EDECODE when the function code is neither fc
 * nor fc | 0x80 (then nothing tells how long the answer is). */
int gw_mbframe_tcp_expected(const uint8_t *head, uint8_t fc);

/* How many transaction ids before the current one count as earlier requests of this
 * connection (a late answer to one of them is discarded, not taken as malformed). */
#define GW_MBF_TCP_STALE_WINDOW 64

/* From the first 7 bytes (MBAP) of what arrived while waiting for the answer to tid:
 * when they head a late answer to one of the GW_MBF_TCP_STALE_WINDOW requests before tid
 * (transaction id not 0: the poller never sends 0; protocol id 0; an MBAP length a
 * Modbus answer can have: 3..254), the length of that
 * whole frame (9..GW_MBF_TCP_MAX_ADU), which the reader discards; else 0. */
size_t gw_mbframe_tcp_stale(const uint8_t *mbap, uint16_t tid);

/* Check a complete answer adu[0..n) to the request (tid, unit, t, count). Returns 0 with
 * dst[0..count) filled (registers, or one 0/1 per bit); GW_EPROTO with *exc set (a
 * well-formed exception answer); GW_EDECODE with *why set to a static description
 * ("unit id mismatch", "MBAP length mismatch", ...) when any field disagrees. unit < 0
 * takes any unit id (the bus option accept_any_unit_id). */
int gw_mbframe_tcp_parse(const uint8_t *adu, size_t n, uint16_t tid, int unit,
                         gw_mb_table t, uint16_t count, uint16_t *dst, int *exc,
                         const char **why);

#endif
