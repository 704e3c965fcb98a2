/* water plugin: unit conversions checked through the vectors/ and the real decoder chain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vectors.h"

static void test_vectors(void **state)
{
    (void)state;
    assert_true(cgt_run_vectors(VECTORS_DIR, "water") >= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
