/* Modbus server-side framing for the simulator, as pure functions over caller buffers:
 * MBAP (TCP) and RTU (serial, CRC-16) framing, and the PDU interpreter that answers
 * function codes 01, 02, 03, 04, 05, 06, 15 and 16 through a register-space callback,
 * with exceptions 01 (function), 02 (address) and 03 (value / quantity / length).
 *
 * Nothing here touches a socket or a clock, so the unit test and fuzzing can drive it
 * byte by byte. Thread: any (no state). */
#ifndef CITYGATE_SIM_FRAME_H
#define CITYGATE_SIM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "modbus/profile.h" /* gw_mb_table */

#define SIM_PDU_MAX 253           /* Modbus PDU limit (function code + data) */
#define SIM_MBAP_HDR 7            /* transaction id, protocol id, length, unit id */
#define SIM_ADU_MAX (SIM_MBAP_HDR + SIM_PDU_MAX)
#define SIM_RTU_MAX 256           /* unit + PDU + CRC */

enum {
    SIM_EX_ILLEGAL_FUNCTION = 0x01,
    SIM_EX_ILLEGAL_ADDRESS = 0x02,
    SIM_EX_ILLEGAL_VALUE = 0x03,
    SIM_EX_DEVICE_FAILURE = 0x04,
    SIM_EX_GATEWAY_TARGET = 0x0B,
};

/* The data model a PDU is answered from. Both callbacks return 0, or a Modbus
 * exception code (1..255) to answer instead. Bits travel as one uint16_t (0 or 1) per
 * bit. read fills out[0..n); write takes in[0..n) (only coils and holding registers are
 * ever written). ctx is the caller's. */
typedef struct sim_frame_space {
    void *ctx;
    int (*read)(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, uint16_t *out);
    int (*write)(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, const uint16_t *in);
} sim_frame_space;

/* One request as framed on the wire; pdu points into the caller's buffer. */
typedef struct sim_frame_adu {
    uint16_t tid;             /* TCP only */
    uint8_t unit;
    const uint8_t *pdu;
    size_t pdu_len;
} sim_frame_adu;

/* Modbus CRC-16 (polynomial 0xA001 reflected, init 0xFFFF). On the wire the low byte
 * goes first. */
uint16_t sim_frame_crc16(const uint8_t *p, size_t n);

/* Answer one request PDU: writes the response PDU (normal or exception) into
 * rsp[0..SIM_PDU_MAX) and returns its length (>= 2). req_len >= 1. */
size_t sim_frame_reply(const sim_frame_space *sp, const uint8_t *req, size_t req_len,
                       uint8_t *rsp);

/* Exception PDU for function fc: {fc | 0x80, code}; returns 2. */
size_t sim_frame_exception(uint8_t fc, uint8_t code, uint8_t *rsp);

/* TCP: the first complete MBAP ADU in buf[0..n). Returns its total length (> 0) with
 * *f filled, 0 when more bytes are needed, or GW_EPROTO when the header is one no
 * server accepts (protocol id != 0, length field < 2 or > 254): close the connection. */
int sim_frame_mbap_parse(const uint8_t *buf, size_t n, sim_frame_adu *f);
/* Write an MBAP ADU (header + pdu) into out (>= SIM_MBAP_HDR + pdu_len bytes); returns
 * its length. */
size_t sim_frame_mbap_build(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu,
                            size_t pdu_len);

/* RTU: the length of the request frame starting at buf[0..n), from its function code
 * (and byte count for 15/16). Returns the length (> 0), 0 when more bytes are needed
 * to tell, or GW_EPROTO for a function code whose request length is unknown here (the
 * caller frames it by the silent interval instead). */
int sim_frame_rtu_request_len(const uint8_t *buf, size_t n);
/* Check the CRC of a complete frame buf[0..len) (len >= 4) and fill *f. Returns 0 or
 * GW_EDECODE (bad CRC or too short: a real slave stays silent). */
int sim_frame_rtu_parse(const uint8_t *buf, size_t len, sim_frame_adu *f);
/* Write unit + pdu + CRC into out (>= pdu_len + 3 bytes); returns its length. */
size_t sim_frame_rtu_build(uint8_t *out, uint8_t unit, const uint8_t *pdu, size_t pdu_len);

#endif
