/* Modbus TCP framing with strict answer checks. See frame.h. */
#include "frame.h"

#include "../error.h"

uint8_t gw_mbframe_function(gw_mb_table t)
{
    switch (t) {
    case GW_MB_COIL: return 1;
    case GW_MB_DISCRETE: return 2;
    case GW_MB_HOLDING: return 3;
    default: return 4;
    }
}

size_t gw_mbframe_tcp_request(uint8_t out[GW_MBF_TCP_REQ_LEN], uint16_t tid, uint8_t unit,
                              gw_mb_table t, uint16_t address, uint16_t count)
{
    out[0] = (uint8_t)(tid >> 8);
    out[1] = (uint8_t)tid;
    out[2] = 0; /* protocol id */
    out[3] = 0;
    out[4] = 0; /* length: unit + function + address + quantity */
    out[5] = 6;
    out[6] = unit;
    out[7] = gw_mbframe_function(t);
    out[8] = (uint8_t)(address >> 8);
    out[9] = (uint8_t)address;
    out[10] = (uint8_t)(count >> 8);
    out[11] = (uint8_t)count;
    return GW_MBF_TCP_REQ_LEN;
}

int gw_mbframe_tcp_expected(const uint8_t *head, uint8_t fc)
{
    if (head[7] == (fc | 0x80))
        return GW_MBF_TCP_HEAD;
    if (head[7] != fc)
        return GW_EDECODE;
    return GW_MBF_TCP_HEAD + head[8]; /* at most 9 + 255 - the caller bounds it */
}

size_t gw_mbframe_tcp_stale(const uint8_t *mbap, uint16_t tid)
{
    unsigned old = (unsigned)mbap[0] << 8 | mbap[1];
    uint16_t back = (uint16_t)(tid - old);
    size_t len = (size_t)mbap[4] << 8 | mbap[5];
    if (old == 0 || back == 0 || back > GW_MBF_TCP_STALE_WINDOW || mbap[2] != 0 || mbap[3] != 0)
        return 0;
    if (len < 3 || 6 + len > GW_MBF_TCP_MAX_ADU)
        return 0;
    return 6 + len;
}

static unsigned bytes_for(gw_mb_table t, uint16_t count)
{
    return gw_mb_table_is_bits(t) ? (count + 7u) / 8u : 2u * count;
}

int gw_mbframe_tcp_parse(const uint8_t *adu, size_t n, uint16_t tid, int unit,
                         gw_mb_table t, uint16_t count, uint16_t *dst, int *exc,
                         const char **why)
{
    uint8_t fc = gw_mbframe_function(t);
    *exc = 0;
    *why = NULL;
    if (n < GW_MBF_TCP_HEAD || n > GW_MBF_TCP_MAX_ADU) {
        *why = "frame length out of range";
        return GW_EDECODE;
    }
    if (((unsigned)adu[0] << 8 | adu[1]) != tid) {
        *why = "transaction id mismatch";
        return GW_EDECODE;
    }
    if (adu[2] != 0 || adu[3] != 0) {
        *why = "protocol id not 0";
        return GW_EDECODE;
    }
    if (((size_t)adu[4] << 8 | adu[5]) != n - 6) {
        *why = "MBAP length mismatch";
        return GW_EDECODE;
    }
    if (unit >= 0 && adu[6] != unit) {
        *why = "unit id mismatch";
        return GW_EDECODE;
    }
    if (adu[7] == (fc | 0x80)) {
        if (n != GW_MBF_TCP_HEAD || adu[8] == 0) {
            *why = "malformed exception";
            return GW_EDECODE;
        }
        *exc = adu[8];
        return GW_EPROTO;
    }
    if (adu[7] != fc) {
        *why = "function code mismatch";
        return GW_EDECODE;
    }
    unsigned want = bytes_for(t, count);
    if (count == 0 || adu[8] != want || n != GW_MBF_TCP_HEAD + want) {
        *why = "byte count mismatch";
        return GW_EDECODE;
    }
    const uint8_t *d = adu + GW_MBF_TCP_HEAD;
    if (gw_mb_table_is_bits(t)) {
        for (unsigned i = 0; i < count; i++)
            dst[i] = (uint16_t)((d[i / 8] >> (i % 8)) & 1u);
    } else {
        for (unsigned i = 0; i < count; i++)
            dst[i] = (uint16_t)(d[2 * i] << 8 | d[2 * i + 1]);
    }
    return 0;
}
