/* The simulator's Modbus framing: CRC-16, MBAP and RTU framing, and the PDU
 * interpreter with its exceptions, as pure functions (devices/sim/sim_frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* The simulator is not part of citygate_core; compile its framing in here. */
#include "../../devices/sim/sim_frame.c"

/* A fake device: 16 holding registers at 100..115, 20 coils at 0..19, everything else
 * absent; unit 7's register 105 answers exception 4. */
typedef struct fake {
    uint16_t hold[16];
    uint16_t coil[20];
    int writes;
} fake;

static int fake_read(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, uint16_t *out)
{
    fake *f = ctx;
    if (t == GW_MB_HOLDING || t == GW_MB_INPUT) {
        if (addr < 100 || addr + n > 116)
            return 2;
        if (addr <= 105 && addr + n > 105 && f->hold[5] == 0xDEAD)
            return 4;
        memcpy(out, f->hold + (addr - 100), n * sizeof *out);
        return 0;
    }
    if (addr + n > 20)
        return 2;
    memcpy(out, f->coil + addr, n * sizeof *out);
    return 0;
}

static int fake_write(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, const uint16_t *in)
{
    fake *f = ctx;
    f->writes++;
    if (t == GW_MB_HOLDING) {
        if (addr < 100 || addr + n > 116)
            return 2;
        memcpy(f->hold + (addr - 100), in, n * sizeof *in);
        return 0;
    }
    if (addr + n > 20)
        return 2;
    memcpy(f->coil + addr, in, n * sizeof *in);
    return 0;
}

static fake F;
static sim_frame_space SP = {.ctx = &F, .read = fake_read, .write = fake_write};

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    for (int i = 0; i < 16; i++)
        F.hold[i] = (uint16_t)(0x1000 + i);
    for (int i = 0; i < 20; i++)
        F.coil[i] = (uint16_t)(i % 3 == 0);
    return 0;
}

static size_t reply(const uint8_t *req, size_t n, uint8_t *rsp)
{
    return sim_frame_reply(&SP, req, n, rsp);
}

static void assert_exception(const uint8_t *req, size_t n, uint8_t code)
{
    uint8_t rsp[SIM_PDU_MAX];
    size_t len = reply(req, n, rsp);
    assert_int_equal(len, 2);
    assert_int_equal(rsp[0], (req[0] & 0x7F) | 0x80);
    assert_int_equal(rsp[1], code);
}

static void test_crc16_known_vectors(void **state)
{
    (void)state;
    /* "01 03 00 00 00 0A" is sent as ... C5 CD (low byte first). */
    const uint8_t a[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A};
    assert_int_equal(sim_frame_crc16(a, sizeof a), 0xCDC5);
    /* The libmodbus RTU test request "11 03 00 6B 00 03" ends in 76 87. */
    const uint8_t b[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03};
    assert_int_equal(sim_frame_crc16(b, sizeof b), 0x8776);
    assert_int_equal(sim_frame_crc16(a, 0), 0xFFFF);
}

static void test_read_holding(void **state)
{
    (void)state;
    const uint8_t req[] = {0x03, 0x00, 0x64, 0x00, 0x03}; /* 100, 3 */
    uint8_t rsp[SIM_PDU_MAX];
    size_t n = reply(req, sizeof req, rsp);
    const uint8_t want[] = {0x03, 0x06, 0x10, 0x00, 0x10, 0x01, 0x10, 0x02};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(rsp, want, sizeof want);
}

static void test_read_input_max_quantity(void **state)
{
    (void)state;
    uint8_t rsp[SIM_PDU_MAX];
    const uint8_t ok[] = {0x04, 0x00, 0x64, 0x00, 0x10}; /* 16 regs */
    assert_int_equal(reply(ok, sizeof ok, rsp), 2 + 32);
    const uint8_t zero[] = {0x04, 0x00, 0x64, 0x00, 0x00};
    assert_exception(zero, sizeof zero, 0x03);
    const uint8_t too_many[] = {0x03, 0x00, 0x00, 0x00, 126};
    assert_exception(too_many, sizeof too_many, 0x03);
}

static void test_read_outside_map_is_exception_02(void **state)
{
    (void)state;
    const uint8_t gap[] = {0x03, 0x00, 0x70, 0x00, 0x05}; /* 112..116: 116 absent */
    assert_exception(gap, sizeof gap, 0x02);
    const uint8_t wrap[] = {0x03, 0xFF, 0xFF, 0x00, 0x02}; /* beyond 65535 */
    assert_exception(wrap, sizeof wrap, 0x02);
}

static void test_callback_exception_passes_through(void **state)
{
    (void)state;
    F.hold[5] = 0xDEAD;
    const uint8_t req[] = {0x03, 0x00, 0x64, 0x00, 0x08};
    assert_exception(req, sizeof req, 0x04);
}

static void test_bad_length_and_function(void **state)
{
    (void)state;
    const uint8_t short_req[] = {0x03, 0x00, 0x64, 0x00};
    assert_exception(short_req, sizeof short_req, 0x03);
    const uint8_t unknown[] = {0x2B, 0x0E, 0x01, 0x00};
    assert_exception(unknown, sizeof unknown, 0x01);
    const uint8_t diag[] = {0x08, 0x00, 0x00, 0x12, 0x34};
    assert_exception(diag, sizeof diag, 0x01);
}

static void test_read_coils_packs_lsb_first(void **state)
{
    (void)state;
    /* coils 0..9 = 1 0 0 1 0 0 1 0 0 1 */
    const uint8_t req[] = {0x01, 0x00, 0x00, 0x00, 0x0A};
    uint8_t rsp[SIM_PDU_MAX];
    size_t n = reply(req, sizeof req, rsp);
    const uint8_t want[] = {0x01, 0x02, 0x49, 0x02};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(rsp, want, sizeof want);
    const uint8_t discrete[] = {0x02, 0x00, 0x00, 0x07, 0xD1}; /* 2001 bits */
    assert_exception(discrete, sizeof discrete, 0x03);
}

static void test_write_single_coil_and_register(void **state)
{
    (void)state;
    uint8_t rsp[SIM_PDU_MAX];
    const uint8_t coil_on[] = {0x05, 0x00, 0x01, 0xFF, 0x00};
    assert_int_equal(reply(coil_on, sizeof coil_on, rsp), 5);
    assert_memory_equal(rsp, coil_on, 5);
    assert_int_equal(F.coil[1], 1);
    const uint8_t coil_bad[] = {0x05, 0x00, 0x01, 0x12, 0x34};
    assert_exception(coil_bad, sizeof coil_bad, 0x03);

    const uint8_t reg[] = {0x06, 0x00, 0x65, 0xAB, 0xCD};
    assert_int_equal(reply(reg, sizeof reg, rsp), 5);
    assert_memory_equal(rsp, reg, 5);
    assert_int_equal(F.hold[1], 0xABCD);
    const uint8_t reg_absent[] = {0x06, 0x00, 0x01, 0x00, 0x01};
    assert_exception(reg_absent, sizeof reg_absent, 0x02);
}

static void test_write_multiple(void **state)
{
    (void)state;
    uint8_t rsp[SIM_PDU_MAX];
    const uint8_t regs[] = {0x10, 0x00, 0x66, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02};
    assert_int_equal(reply(regs, sizeof regs, rsp), 5);
    const uint8_t regs_ack[] = {0x10, 0x00, 0x66, 0x00, 0x02};
    assert_memory_equal(rsp, regs_ack, 5);
    assert_int_equal(F.hold[2], 0x000A);
    assert_int_equal(F.hold[3], 0x0102);

    /* byte count disagrees with the quantity */
    const uint8_t bad_bc[] = {0x10, 0x00, 0x66, 0x00, 0x02, 0x03, 0x00, 0x0A, 0x01};
    assert_exception(bad_bc, sizeof bad_bc, 0x03);
    /* frame shorter than its byte count */
    const uint8_t trunc[] = {0x10, 0x00, 0x66, 0x00, 0x02, 0x04, 0x00, 0x0A};
    assert_exception(trunc, sizeof trunc, 0x03);

    const uint8_t coils[] = {0x0F, 0x00, 0x08, 0x00, 0x0A, 0x02, 0xCD, 0x01};
    assert_int_equal(reply(coils, sizeof coils, rsp), 5);
    /* 0xCD = 1100 1101, LSB first: coils 8..15 = 1 0 1 1 0 0 1 1; 16..17 = 1 0 */
    const uint16_t want[] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    assert_memory_equal(F.coil + 8, want, sizeof want);
}

static void test_mbap_framing(void **state)
{
    (void)state;
    sim_frame_adu f;
    const uint8_t req[] = {0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x11,
                           0x03, 0x00, 0x6B, 0x00, 0x03, 0xAA};
    assert_int_equal(sim_frame_mbap_parse(req, 6, &f), 0);
    assert_int_equal(sim_frame_mbap_parse(req, 11, &f), 0);
    assert_int_equal(sim_frame_mbap_parse(req, sizeof req, &f), 12);
    assert_int_equal(f.tid, 0x1234);
    assert_int_equal(f.unit, 0x11);
    assert_int_equal(f.pdu_len, 5);
    assert_int_equal(f.pdu[0], 0x03);

    uint8_t bad[] = {0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x01, 0x03, 0, 0, 0, 1};
    assert_int_equal(sim_frame_mbap_parse(bad, sizeof bad, &f), GW_EPROTO);
    bad[3] = 0;
    bad[5] = 1; /* length 1: no PDU */
    assert_int_equal(sim_frame_mbap_parse(bad, sizeof bad, &f), GW_EPROTO);
    bad[4] = 0x01;
    bad[5] = 0x00; /* length 256 */
    assert_int_equal(sim_frame_mbap_parse(bad, sizeof bad, &f), GW_EPROTO);

    uint8_t out[SIM_ADU_MAX];
    const uint8_t pdu[] = {0x83, 0x02};
    size_t n = sim_frame_mbap_build(out, 0xBEEF, 9, pdu, sizeof pdu);
    const uint8_t want[] = {0xBE, 0xEF, 0x00, 0x00, 0x00, 0x03, 0x09, 0x83, 0x02};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
}

static void test_rtu_framing(void **state)
{
    (void)state;
    const uint8_t req[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87};
    assert_int_equal(sim_frame_rtu_request_len(req, 1), 0);
    assert_int_equal(sim_frame_rtu_request_len(req, 2), 8);
    sim_frame_adu f;
    assert_int_equal(sim_frame_rtu_parse(req, sizeof req, &f), 0);
    assert_int_equal(f.unit, 0x11);
    assert_int_equal(f.pdu_len, 5);

    uint8_t bad[sizeof req];
    memcpy(bad, req, sizeof req);
    bad[7] ^= 1;
    assert_int_equal(sim_frame_rtu_parse(bad, sizeof bad, &f), GW_EDECODE);
    assert_int_equal(sim_frame_rtu_parse(req, 3, &f), GW_EDECODE);

    const uint8_t w16[] = {0x01, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04};
    assert_int_equal(sim_frame_rtu_request_len(w16, 6), 0);
    assert_int_equal(sim_frame_rtu_request_len(w16, 7), 13);
    const uint8_t odd[] = {0x01, 0x2B, 0x0E};
    assert_int_equal(sim_frame_rtu_request_len(odd, sizeof odd), GW_EPROTO);

    uint8_t out[SIM_RTU_MAX];
    const uint8_t pdu[] = {0x03, 0x00, 0x00, 0x00, 0x0A};
    size_t n = sim_frame_rtu_build(out, 0x01, pdu, sizeof pdu);
    const uint8_t want[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
}

/* A full RTU round trip through the interpreter, as the server does it. */
static void test_rtu_round_trip(void **state)
{
    (void)state;
    uint8_t req[SIM_RTU_MAX], rsp_pdu[SIM_PDU_MAX], out[SIM_RTU_MAX];
    const uint8_t pdu[] = {0x03, 0x00, 0x64, 0x00, 0x02};
    size_t n = sim_frame_rtu_build(req, 5, pdu, sizeof pdu);
    sim_frame_adu f;
    assert_int_equal(sim_frame_rtu_parse(req, n, &f), 0);
    size_t rl = sim_frame_reply(&SP, f.pdu, f.pdu_len, rsp_pdu);
    size_t on = sim_frame_rtu_build(out, f.unit, rsp_pdu, rl);
    const uint8_t want_head[] = {0x05, 0x03, 0x04, 0x10, 0x00, 0x10, 0x01};
    assert_int_equal(on, sizeof want_head + 2);
    assert_memory_equal(out, want_head, sizeof want_head);
    assert_int_equal(sim_frame_crc16(out, on), 0); /* CRC over frame + CRC is 0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_crc16_known_vectors, setup),
        cmocka_unit_test_setup(test_read_holding, setup),
        cmocka_unit_test_setup(test_read_input_max_quantity, setup),
        cmocka_unit_test_setup(test_read_outside_map_is_exception_02, setup),
        cmocka_unit_test_setup(test_callback_exception_passes_through, setup),
        cmocka_unit_test_setup(test_bad_length_and_function, setup),
        cmocka_unit_test_setup(test_read_coils_packs_lsb_first, setup),
        cmocka_unit_test_setup(test_write_single_coil_and_register, setup),
        cmocka_unit_test_setup(test_write_multiple, setup),
        cmocka_unit_test_setup(test_mbap_framing, setup),
        cmocka_unit_test_setup(test_rtu_framing, setup),
        cmocka_unit_test_setup(test_rtu_round_trip, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
