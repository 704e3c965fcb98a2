/* PLACEHOLDER — replaced by the Modbus poller work (issue 3). */
#include "cli.h"
#include "error.h"

#include <stdio.h>

int gw_cmd_poll(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "citygate poll: not built yet\n");
    return GW_EXIT_RUNTIME;
}
