/* The citygate command-line verbs. Each takes the arguments after the verb name
 * (argv[0] is the verb) and returns the process exit code (GW_EXIT_*).
 * Thread: main thread only. */
#ifndef CITYGATE_CLI_H
#define CITYGATE_CLI_H

int gw_cmd_run(int argc, char **argv);    /* gateway.c */
int gw_cmd_check(int argc, char **argv);  /* check.c */
int gw_cmd_poll(int argc, char **argv);   /* modbus/poll_cmd.c */
int gw_cmd_decode(int argc, char **argv); /* decode_cmd.c */

/* Shared option parsing for "-c FILE" / "--config FILE" / "--config=FILE".
 * Returns the file or NULL (and prints usage to stderr). */
const char *gw_cli_config_arg(int argc, char **argv, const char *usage);
/* 1 if argv holds -h or --help. */
int gw_cli_wants_help(int argc, char **argv);

#endif
