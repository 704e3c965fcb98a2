/* citygate: edge gateway for digital city management. */
#include "cli.h"
#include "error.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: citygate <command> [options]\n"
    "\n"
    "commands:\n"
    "  run -c FILE                  run the gateway (foreground; systemd notify service)\n"
    "  check -c FILE                validate config, profiles, rules and plugins\n"
    "  poll -c FILE --device ID     poll one device once and print its decoded samples\n"
    "  decode --plugin NAME (--hex HEX | --json JSON) [--device ID -c FILE]\n"
    "                               run a decoder on one payload and print the samples\n"
    "\n"
    "options:\n"
    "  --version                    print the version\n"
    "  -h, --help                   this text; 'citygate COMMAND --help' for a command\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure, 2 configuration error\n";

int main(int argc, char **argv)
{
    /* Reports go to stdout, logs to stderr: line buffering keeps them in order in a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fputs(usage, stderr);
        return GW_EXIT_CONFIG;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
        printf("citygate %s\n", CITYGATE_VERSION);
        return GW_EXIT_OK;
    }
    if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage, stdout);
        return GW_EXIT_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } verbs[] = {
        {"run", gw_cmd_run},
        {"check", gw_cmd_check},
        {"poll", gw_cmd_poll},
        {"decode", gw_cmd_decode},
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verb, verbs[i].name) == 0)
            return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "citygate: unknown command '%s'\n\n%s", verb, usage);
    return GW_EXIT_CONFIG;
}
