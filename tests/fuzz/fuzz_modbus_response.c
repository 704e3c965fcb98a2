/* Fuzz Modbus responses: the input is served as the answer of a fake TCP server (one end
 * of a socketpair handed to a libmodbus client context, as the poller uses it) to a read
 * of N registers or bits, and whatever libmodbus accepts is decoded through a profile
 * covering every type and byte order, with buffers sized like the poller's (dest >= nb,
 * nb capped at 125 / 2000). The input bytes are also decoded directly as raw registers,
 * and checked as the answer by the poller's own TCP framing (gateway/modbus/frame.h, the
 * path the poller takes on TCP): whatever it accepts must be exactly framed.
 *
 * Input layout: byte 0 selects the function (low 2 bits) and whether the transaction id
 * is forced to the expected one (bit 2); byte 1 the quantity; the rest is the response
 * ADU as it arrives on the wire. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <modbus/modbus.h>

#include "error.h"
#include "modbus/frame.h"
#include "modbus/plan.h"
#include "modbus/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char profile_json[] =
    "{\"name\":\"fuzz\",\"points\":["
    "{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"f32\"},"
    "{\"field\":\"b\",\"table\":\"holding\",\"address\":2,\"type\":\"u32\",\"byte_order\":\"CDAB\",\"scale\":0.001},"
    "{\"field\":\"c\",\"table\":\"holding\",\"address\":4,\"type\":\"i16\",\"decimal_register\":5,\"invalid\":[32767]},"
    "{\"field\":\"d\",\"table\":\"holding\",\"address\":6,\"type\":\"f64\",\"byte_order\":\"BADC\"},"
    "{\"field\":\"e\",\"table\":\"holding\",\"address\":10,\"type\":\"i64\",\"byte_order\":\"DCBA\"},"
    "{\"field\":\"f\",\"table\":\"holding\",\"address\":14,\"type\":\"string\",\"count\":4},"
    "{\"field\":\"g\",\"table\":\"holding\",\"address\":18,\"type\":\"bcd\",\"count\":2},"
    "{\"field\":\"h\",\"table\":\"holding\",\"address\":20,\"type\":\"enum\",\"enum\":{\"1\":\"one\",\"2\":\"two\"}},"
    "{\"field\":\"i\",\"table\":\"holding\",\"address\":21,\"type\":\"bit\",\"bit\":7},"
    "{\"field\":\"j\",\"table\":\"holding\",\"address\":22,\"type\":\"u64\",\"min\":0,\"max\":1e6},"
    "{\"field\":\"k\",\"table\":\"holding\",\"address\":26,\"type\":\"f32\",\"byte_order\":\"DCBA\"}"
    "]}";

static gw_profile *prof;

static void decode_all(const uint16_t *regs, size_t n)
{
    for (size_t k = 0; k < prof->n_points; k++) {
        const gw_profile_point *pt = &prof->points[k];
        if ((size_t)pt->address + pt->count > n)
            continue;
        int dp = pt->has_dp && pt->dp_address < n ? (int16_t)regs[pt->dp_address] : 0;
        gw_point_value v;
        (void)gw_profile_decode_point(pt, regs + pt->address, n - pt->address, dp, &v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!prof) {
        cJSON *j = cJSON_Parse(profile_json);
        gw_cfgerr e = {0};
        if (!j || gw_profile_parse("fuzz", j, &e, &prof) != 0)
            abort();
        cJSON_Delete(j);
        gw_cfgerr_free(&e);
    }
    if (size < 2)
        return 0;

    /* Raw registers straight through the decoders. */
    uint16_t raw[64] = {0};
    size_t nraw = (size - 2) / 2 > 64 ? 64 : (size - 2) / 2;
    for (size_t i = 0; i < nraw; i++)
        raw[i] = (uint16_t)(data[2 + 2 * i] << 8 | data[3 + 2 * i]);
    decode_all(raw, 64);

    /* The same bytes as a server's answer to a read. */
    int fn = data[0] & 3, force_tid = data[0] & 4;
    int nb = 1 + data[1] % (fn < 2 ? 200 : GW_MB_MAX_REGS);

    /* The poller's framing: read the way tcp_read does (head, then the length the head
     * gives), then the strict check; an accepted answer is exactly as long as it says. */
    {
        static const gw_mb_table tabs[] = {GW_MB_COIL, GW_MB_DISCRETE, GW_MB_HOLDING, GW_MB_INPUT};
        const uint8_t *a = data + 2;
        size_t an = size - 2;
        uint16_t dst[GW_MB_MAX_BITS];
        int exc;
        const char *why;
        uint16_t tid = force_tid ? 1 : (uint16_t)(an >= 2 ? a[0] << 8 | a[1] : 0);
        if (an >= GW_MBF_TCP_HEAD) {
            int total = gw_mbframe_tcp_expected(a, gw_mbframe_function(tabs[fn]));
            if (total > 0 && (size_t)total <= an && total <= GW_MBF_TCP_MAX_ADU) {
                int rc = gw_mbframe_tcp_parse(a, (size_t)total, tid, an > 6 ? a[6] : 1, tabs[fn],
                                              (uint16_t)nb, dst, &exc, &why);
                if (rc == 0 && ((size_t)(a[4] << 8 | a[5]) != (size_t)total - 6 || a[8] + 9 != total))
                    abort(); /* accepted a frame whose lengths disagree */
                if (rc == 0 && fn >= 2)
                    decode_all(dst, (size_t)nb);
                if (rc == GW_EPROTO && (exc < 1 || total != 9))
                    abort();
            }
        }
        if (an >= 7) { /* a late answer is skipped by its MBAP length: 9..260 bytes */
            size_t stale = gw_mbframe_tcp_stale(a, (uint16_t)(tid + 1));
            if (stale && (stale < 9 || stale > 260 || stale != (size_t)(a[4] << 8 | a[5]) + 6))
                abort();
        }
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    size_t rn = size - 2 > 4096 ? 4096 : size - 2;
    uint8_t rsp[4096];
    memcpy(rsp, data + 2, rn);
    if (force_tid && rn >= 2) { /* a fresh context's first transaction id is 1 */
        rsp[0] = 0;
        rsp[1] = 1;
    }
    if (write(sv[1], rsp, rn) != (ssize_t)rn) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    shutdown(sv[1], SHUT_WR); /* EOF after the answer: no waiting on timeouts */

    modbus_t *ctx = modbus_new_tcp_pi("127.0.0.1", "502");
    if (!ctx) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    modbus_set_error_recovery(ctx, MODBUS_ERROR_RECOVERY_NONE);
    modbus_set_response_timeout(ctx, 0, 20000);
    modbus_set_byte_timeout(ctx, 0, 0);
    modbus_set_socket(ctx, sv[0]);
    modbus_set_slave(ctx, 1);
    uint16_t regs[GW_MB_MAX_REGS];
    uint8_t bits[GW_MB_MAX_BITS];
    int rc;
    switch (fn) {
    case 0: rc = modbus_read_bits(ctx, 0, nb, bits); break;
    case 1: rc = modbus_read_input_bits(ctx, 0, nb, bits); break;
    case 2: rc = modbus_read_registers(ctx, 0, nb, regs); break;
    default: rc = modbus_read_input_registers(ctx, 0, nb, regs); break;
    }
    if (rc == nb && fn >= 2)
        decode_all(regs, (size_t)nb);
    modbus_close(ctx); /* closes sv[0] */
    modbus_free(ctx);
    close(sv[1]);
    return 0;
}
