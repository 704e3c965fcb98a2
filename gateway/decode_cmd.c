/* PLACEHOLDER — replaced by the plugin SDK work (issue 4). */
#include "cli.h"
#include "error.h"

#include <stdio.h>

int gw_cmd_decode(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "citygate decode: not built yet\n");
    return GW_EXIT_RUNTIME;
}
