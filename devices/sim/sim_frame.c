/* Modbus server framing and PDU interpreter (see sim_frame.h). */
#include "sim_frame.h"

#include <string.h>

#include "error.h"

#define MAX_READ_BITS 2000
#define MAX_READ_REGS 125
#define MAX_WRITE_BITS 1968
#define MAX_WRITE_REGS 123

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

uint16_t sim_frame_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

size_t sim_frame_exception(uint8_t fc, uint8_t code, uint8_t *rsp)
{
    rsp[0] = (uint8_t)(fc | 0x80);
    rsp[1] = code;
    return 2;
}

/* An exception code from a callback, kept in 1..255. */
static uint8_t excode(int rc)
{
    return (rc > 0 && rc < 256) ? (uint8_t)rc : SIM_EX_DEVICE_FAILURE;
}

static size_t reply_read(const sim_frame_space *sp, gw_mb_table t, const uint8_t *req,
                         size_t len, uint8_t *rsp)
{
    uint8_t fc = req[0];
    if (len != 5)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
    uint16_t addr = get16(req + 1), qty = get16(req + 3);
    int bits = gw_mb_table_is_bits(t);
    if (qty < 1 || qty > (bits ? MAX_READ_BITS : MAX_READ_REGS))
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
    if ((uint32_t)addr + qty > 0x10000u)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_ADDRESS, rsp);

    uint16_t vals[MAX_READ_BITS];
    int rc = sp->read(sp->ctx, t, addr, qty, vals);
    if (rc != 0)
        return sim_frame_exception(fc, excode(rc), rsp);

    rsp[0] = fc;
    if (bits) {
        size_t nbytes = ((size_t)qty + 7) / 8;
        memset(rsp + 2, 0, nbytes);
        for (size_t i = 0; i < qty; i++)
            if (vals[i])
                rsp[2 + i / 8] |= (uint8_t)(1u << (i % 8));
        rsp[1] = (uint8_t)nbytes;
        return 2 + nbytes;
    }
    for (size_t i = 0; i < qty; i++)
        put16(rsp + 2 + 2 * i, vals[i]);
    rsp[1] = (uint8_t)(2 * qty);
    return 2 + 2 * (size_t)qty;
}

static size_t reply_write_single(const sim_frame_space *sp, const uint8_t *req, size_t len,
                                 uint8_t *rsp)
{
    uint8_t fc = req[0];
    if (len != 5)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
    uint16_t addr = get16(req + 1), v = get16(req + 3);
    uint16_t in;
    gw_mb_table t;
    if (fc == 0x05) {
        if (v != 0xFF00 && v != 0x0000)
            return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
        in = v ? 1 : 0;
        t = GW_MB_COIL;
    } else {
        in = v;
        t = GW_MB_HOLDING;
    }
    int rc = sp->write(sp->ctx, t, addr, 1, &in);
    if (rc != 0)
        return sim_frame_exception(fc, excode(rc), rsp);
    memcpy(rsp, req, 5); /* the normal answer echoes the request */
    return 5;
}

static size_t reply_write_multiple(const sim_frame_space *sp, const uint8_t *req, size_t len,
                                   uint8_t *rsp)
{
    uint8_t fc = req[0];
    if (len < 6)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
    uint16_t addr = get16(req + 1), qty = get16(req + 3);
    size_t bc = req[5];
    int bits = fc == 0x0F;
    size_t want_bc = bits ? ((size_t)qty + 7) / 8 : 2 * (size_t)qty;
    if (qty < 1 || qty > (bits ? MAX_WRITE_BITS : MAX_WRITE_REGS) || bc != want_bc ||
        len != 6 + bc)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_VALUE, rsp);
    if ((uint32_t)addr + qty > 0x10000u)
        return sim_frame_exception(fc, SIM_EX_ILLEGAL_ADDRESS, rsp);

    uint16_t vals[MAX_WRITE_BITS];
    for (size_t i = 0; i < qty; i++)
        vals[i] = bits ? (uint16_t)((req[6 + i / 8] >> (i % 8)) & 1) : get16(req + 6 + 2 * i);
    int rc = sp->write(sp->ctx, bits ? GW_MB_COIL : GW_MB_HOLDING, addr, qty, vals);
    if (rc != 0)
        return sim_frame_exception(fc, excode(rc), rsp);
    memcpy(rsp, req, 5);
    return 5;
}

size_t sim_frame_reply(const sim_frame_space *sp, const uint8_t *req, size_t req_len,
                       uint8_t *rsp)
{
    switch (req[0]) {
    case 0x01: return reply_read(sp, GW_MB_COIL, req, req_len, rsp);
    case 0x02: return reply_read(sp, GW_MB_DISCRETE, req, req_len, rsp);
    case 0x03: return reply_read(sp, GW_MB_HOLDING, req, req_len, rsp);
    case 0x04: return reply_read(sp, GW_MB_INPUT, req, req_len, rsp);
    case 0x05:
    case 0x06: return reply_write_single(sp, req, req_len, rsp);
    case 0x0F:
    case 0x10: return reply_write_multiple(sp, req, req_len, rsp);
    default: return sim_frame_exception(req[0] & 0x7F, SIM_EX_ILLEGAL_FUNCTION, rsp);
    }
}

int sim_frame_mbap_parse(const uint8_t *buf, size_t n, sim_frame_adu *f)
{
    if (n < SIM_MBAP_HDR)
        return 0;
    uint16_t proto = get16(buf + 2), len = get16(buf + 4);
    if (proto != 0 || len < 2 || len > 1 + SIM_PDU_MAX)
        return GW_EPROTO;
    size_t total = 6 + (size_t)len;
    if (n < total)
        return 0;
    f->tid = get16(buf);
    f->unit = buf[6];
    f->pdu = buf + SIM_MBAP_HDR;
    f->pdu_len = (size_t)len - 1;
    return (int)total;
}

size_t sim_frame_mbap_build(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu,
                            size_t pdu_len)
{
    put16(out, tid);
    put16(out + 2, 0);
    put16(out + 4, (uint16_t)(pdu_len + 1));
    out[6] = unit;
    memmove(out + SIM_MBAP_HDR, pdu, pdu_len);
    return SIM_MBAP_HDR + pdu_len;
}

int sim_frame_rtu_request_len(const uint8_t *buf, size_t n)
{
    if (n < 2)
        return 0;
    switch (buf[1]) {
    case 0x01: case 0x02: case 0x03: case 0x04: case 0x05: case 0x06:
        return 8; /* unit, fc, address, quantity/value, crc */
    case 0x0F: case 0x10:
        if (n < 7)
            return 0;
        return 9 + buf[6]; /* unit, fc, address, quantity, byte count, data, crc */
    default:
        return GW_EPROTO;
    }
}

int sim_frame_rtu_parse(const uint8_t *buf, size_t len, sim_frame_adu *f)
{
    if (len < 4 || len > SIM_RTU_MAX)
        return GW_EDECODE;
    uint16_t crc = sim_frame_crc16(buf, len - 2);
    if (buf[len - 2] != (uint8_t)crc || buf[len - 1] != (uint8_t)(crc >> 8))
        return GW_EDECODE;
    f->tid = 0;
    f->unit = buf[0];
    f->pdu = buf + 1;
    f->pdu_len = len - 3;
    return 0;
}

size_t sim_frame_rtu_build(uint8_t *out, uint8_t unit, const uint8_t *pdu, size_t pdu_len)
{
    memmove(out + 1, pdu, pdu_len);
    out[0] = unit;
    uint16_t crc = sim_frame_crc16(out, pdu_len + 1);
    out[pdu_len + 1] = (uint8_t)crc;
    out[pdu_len + 2] = (uint8_t)(crc >> 8);
    return pdu_len + 3;
}
