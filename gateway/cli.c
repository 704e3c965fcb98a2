#include "cli.h"

#include <stdio.h>
#include <string.h>

int gw_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

const char *gw_cli_config_arg(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    /* "citygate check FILE" is accepted too: a lone non-option argument. */
    if (argc == 2 && argv[1][0] != '-')
        return argv[1];
    fprintf(stderr, "%s: missing -c FILE\n%s", argv[0], usage);
    return NULL;
}
