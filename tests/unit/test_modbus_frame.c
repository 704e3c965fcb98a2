/* Modbus TCP framing (gateway/modbus/frame.c): the request bytes, and an answer taken only
 * when every field agrees with the request. Each wrong field is one case, built from a
 * good answer with that one field changed (the unit id and the MBAP length are the two
 * libmodbus 3.1.6 let through). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "modbus/frame.h"

/* A good answer to "read 3 holding registers" (tid 0x1234, unit 7): 0x0102 0x0304 0xFFFE. */
static size_t good_regs(uint8_t *a)
{
    static const uint8_t g[] = {0x12, 0x34, 0, 0, 0, 9, 7, 3, 6, 1, 2, 3, 4, 0xFF, 0xFE};
    memcpy(a, g, sizeof g);
    return sizeof g;
}

static int parse(const uint8_t *a, size_t n, gw_mb_table t, uint16_t count, uint16_t *dst,
                 int *exc, const char **why)
{
    return gw_mbframe_tcp_parse(a, n, 0x1234, 7, t, count, dst, exc, why);
}

static void test_request(void **state)
{
    (void)state;
    uint8_t r[GW_MBF_TCP_REQ_LEN];
    assert_int_equal(gw_mbframe_tcp_request(r, 0xBEEF, 17, GW_MB_INPUT, 0x0102, 125), 12);
    static const uint8_t want[] = {0xBE, 0xEF, 0, 0, 0, 6, 17, 4, 0x01, 0x02, 0, 125};
    assert_memory_equal(r, want, sizeof want);
    gw_mbframe_tcp_request(r, 1, 1, GW_MB_COIL, 0, 2000);
    assert_int_equal(r[7], 1);
    assert_int_equal(r[10] << 8 | r[11], 2000);
    assert_int_equal(gw_mbframe_function(GW_MB_DISCRETE), 2);
    assert_int_equal(gw_mbframe_function(GW_MB_HOLDING), 3);
}

static void test_good_registers(void **state)
{
    (void)state;
    uint8_t a[64];
    size_t n = good_regs(a);
    assert_int_equal(gw_mbframe_tcp_expected(a, 3), (int)n);
    uint16_t d[3] = {0};
    int exc = -1;
    const char *why = "x";
    assert_int_equal(parse(a, n, GW_MB_HOLDING, 3, d, &exc, &why), 0);
    assert_int_equal(d[0], 0x0102);
    assert_int_equal(d[1], 0x0304);
    assert_int_equal(d[2], 0xFFFE);
    assert_int_equal(exc, 0);
    assert_null(why);
}

static void test_good_bits(void **state)
{
    (void)state;
    /* 10 coils: 0xCD 0x01 -> bits 0,2,3,6,7,8 set (LSB first) */
    static const uint8_t a[] = {0x12, 0x34, 0, 0, 0, 5, 7, 1, 2, 0xCD, 0x01};
    uint16_t d[10];
    int exc;
    const char *why;
    assert_int_equal(parse(a, sizeof a, GW_MB_COIL, 10, d, &exc, &why), 0);
    static const uint16_t want[] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    assert_memory_equal(d, want, sizeof want);
    /* the same bytes are not an answer to a discrete-input read (function 2) */
    assert_int_equal(parse(a, sizeof a, GW_MB_DISCRETE, 10, d, &exc, &why), GW_EDECODE);
    assert_string_equal(why, "function code mismatch");
}

static void test_exception(void **state)
{
    (void)state;
    uint8_t a[] = {0x12, 0x34, 0, 0, 0, 3, 7, 0x83, 2};
    assert_int_equal(gw_mbframe_tcp_expected(a, 3), 9);
    uint16_t d[3];
    int exc;
    const char *why;
    assert_int_equal(parse(a, sizeof a, GW_MB_HOLDING, 3, d, &exc, &why), GW_EPROTO);
    assert_int_equal(exc, 2);
    a[8] = 0; /* exception code 0 does not exist */
    assert_int_equal(parse(a, sizeof a, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    a[8] = 4;
    a[6] = 8; /* an exception from another unit is not this device's */
    assert_int_equal(parse(a, sizeof a, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    assert_string_equal(why, "unit id mismatch");
    /* a bus with accept_any_unit_id: the same answer is taken */
    assert_int_equal(gw_mbframe_tcp_parse(a, sizeof a, 0x1234, -1, GW_MB_HOLDING, 3, d, &exc, &why),
                     GW_EPROTO);
    assert_int_equal(exc, 4);
    uint8_t g[] = {0x12, 0x34, 0, 0, 0, 5, 255, 3, 2, 0x01, 0x02};
    assert_int_equal(gw_mbframe_tcp_parse(g, sizeof g, 0x1234, -1, GW_MB_HOLDING, 1, d, &exc, &why), 0);
    assert_int_equal(d[0], 0x0102);
    assert_int_equal(gw_mbframe_tcp_parse(g, sizeof g, 0x1234, 7, GW_MB_HOLDING, 1, d, &exc, &why),
                     GW_EDECODE);
}

/* Every field of a good answer changed alone is refused, with its name. */
static void test_each_wrong_field(void **state)
{
    (void)state;
    static const struct {
        size_t at;
        int delta;
        const char *why;
    } cases[] = {
        {0, 1, "transaction id mismatch"}, {1, 1, "transaction id mismatch"},
        {2, 1, "protocol id not 0"},       {3, 1, "protocol id not 0"},
        {5, 3, "MBAP length mismatch"},    {5, -1, "MBAP length mismatch"},
        {4, 1, "MBAP length mismatch"},    {6, 1, "unit id mismatch"},
        {6, -7, "unit id mismatch"},       {7, 1, "function code mismatch"},
        {8, 2, "byte count mismatch"},     {8, -2, "byte count mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[64];
        size_t n = good_regs(a);
        a[cases[i].at] = (uint8_t)(a[cases[i].at] + cases[i].delta);
        uint16_t d[3] = {0xAAAA, 0xAAAA, 0xAAAA};
        int exc;
        const char *why = NULL;
        assert_int_equal(parse(a, n, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
        assert_non_null(why);
        assert_string_equal(why, cases[i].why);
        assert_int_equal(d[0], 0xAAAA); /* nothing written from a refused answer */
    }
}

static void test_lengths(void **state)
{
    (void)state;
    uint8_t a[300];
    size_t n = good_regs(a);
    uint16_t d[4];
    int exc;
    const char *why;
    /* fewer registers than asked, consistently framed: still not the answer asked for */
    assert_int_equal(parse(a, n, GW_MB_HOLDING, 4, d, &exc, &why), GW_EDECODE);
    assert_string_equal(why, "byte count mismatch");
    /* one byte short / one byte extra (with an MBAP length to match) */
    a[5] = 8;
    assert_int_equal(parse(a, n - 1, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    a[5] = 10;
    a[n] = 0;
    assert_int_equal(parse(a, n + 1, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    assert_int_equal(parse(a, 8, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    assert_int_equal(parse(a, 261, GW_MB_HOLDING, 3, d, &exc, &why), GW_EDECODE);
    assert_string_equal(why, "frame length out of range");
    /* a function code that is neither the request's nor its exception: no length known */
    a[7] = 0x10;
    assert_int_equal(gw_mbframe_tcp_expected(a, 3), GW_EDECODE);
    a[7] = 3;
    a[8] = 250; /* 125 registers */
    assert_int_equal(gw_mbframe_tcp_expected(a, 3), 259);
}

/* Coils / discrete inputs whose count is not a multiple of 8: ceil(count / 8) bytes, bits
 * LSB first, the padding bits of the last byte ignored; the largest read (2000 bits). */
static void test_bit_counts(void **state)
{
    (void)state;
    static const uint16_t counts[] = {1, 7, 8, 9, 15, 16, 17, 2000};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        uint16_t count = counts[c];
        unsigned nb = (count + 7u) / 8u;
        uint8_t a[GW_MBF_TCP_MAX_ADU] = {0x12, 0x34, 0, 0, (uint8_t)((nb + 3) >> 8),
                                         (uint8_t)(nb + 3), 7, 2, (uint8_t)nb};
        for (unsigned i = 0; i < nb; i++)
            a[9 + i] = (uint8_t)(0xA5 ^ i);
        for (unsigned i = count; i < nb * 8; i++) /* padding set: must be ignored */
            a[9 + i / 8] |= (uint8_t)(1u << (i % 8));
        assert_int_equal(gw_mbframe_tcp_expected(a, 2), (int)(9 + nb));
        static uint16_t d[2001];
        d[count] = 0x7777;
        int exc;
        const char *why;
        assert_int_equal(parse(a, 9 + nb, GW_MB_DISCRETE, count, d, &exc, &why), 0);
        for (unsigned i = 0; i < count; i++)
            assert_int_equal(d[i], ((0xA5u ^ (i / 8)) >> (i % 8)) & 1u);
        assert_int_equal(d[count], 0x7777); /* nothing past count written */
        /* one byte too many or too few for count */
        a[8] = (uint8_t)(nb + 1);
        assert_int_equal(parse(a, 9 + nb, GW_MB_DISCRETE, count, d, &exc, &why), GW_EDECODE);
        if (count > 1) {
            a[8] = (uint8_t)nb;
            assert_int_equal(parse(a, 9 + nb, GW_MB_DISCRETE, (uint16_t)(count + 8), d, &exc, &why),
                             GW_EDECODE);
        }
    }
}

/* Which heads are late answers to earlier requests, and how long they are. */
static void test_stale(void **state)
{
    (void)state;
    uint8_t a[64];
    good_regs(a); /* tid 0x1234, MBAP length 9: 15 bytes */
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 0);  /* the current answer */
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1235), 15); /* the one before */
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234 + GW_MBF_TCP_STALE_WINDOW), 15);
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234 + GW_MBF_TCP_STALE_WINDOW + 1), 0);
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1233), 0); /* from the future: not ours */
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234 ^ 0x55AA), 0);
    /* across the wrap: 0xFFFF was sent before 1 (0 is never sent) */
    a[0] = 0xFF;
    a[1] = 0xFF;
    assert_int_equal(gw_mbframe_tcp_stale(a, 1), 15);
    a[0] = 0;
    a[1] = 0;
    assert_int_equal(gw_mbframe_tcp_stale(a, 1), 0);
    assert_int_equal(gw_mbframe_tcp_stale(a, 5), 0);
    a[0] = 0x12;
    a[1] = 0x33;
    /* an exception (9 bytes), the longest answer, and lengths no answer has */
    a[5] = 3;
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 9);
    a[4] = 0;
    a[5] = 254;
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), GW_MBF_TCP_MAX_ADU);
    a[5] = 255;
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 0);
    a[4] = 0xFF;
    a[5] = 0xFF;
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 0);
    a[4] = 0;
    a[5] = 2;
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 0);
    a[5] = 9;
    a[2] = 1; /* not Modbus */
    assert_int_equal(gw_mbframe_tcp_stale(a, 0x1234), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),        cmocka_unit_test(test_good_registers),
        cmocka_unit_test(test_good_bits),      cmocka_unit_test(test_exception),
        cmocka_unit_test(test_each_wrong_field), cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_bit_counts),     cmocka_unit_test(test_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
