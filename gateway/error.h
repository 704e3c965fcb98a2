/* citygate error vocabulary: every function returns 0 on success or a negative GW_E*
 * code; gw_strerror() names it. Outputs answer OK / RETRY / ERROR (gw_out_rc) and the
 * core owns retries and backoff. */
#ifndef CITYGATE_ERROR_H
#define CITYGATE_ERROR_H

enum {
    GW_OK = 0,
    GW_ENOMEM = -1,    /* allocation failed */
    GW_EINVAL = -2,    /* bad argument or input */
    GW_EIO = -3,       /* I/O or system call failed; errno has details */
    GW_ECONFIG = -4,   /* configuration error (exit code 2) */
    GW_ETIMEDOUT = -5, /* deadline passed */
    GW_EFULL = -6,     /* bounded queue or store full */
    GW_ECLOSED = -7,   /* queue or connection shut down */
    GW_ENOTFOUND = -8, /* no such device, field, plugin, ... */
    GW_EDECODE = -9,   /* payload or frame could not be decoded */
    GW_EPROTO = -10,   /* peer spoke the protocol wrongly */
    GW_ECORRUPT = -11, /* a store failed its integrity check */
    GW_EAGAIN = -12,   /* try again later (transient) */
    GW_EABI = -13,     /* plugin ABI mismatch */
};

/* Exit codes of the citygate binary. */
enum { GW_EXIT_OK = 0, GW_EXIT_RUNTIME = 1, GW_EXIT_CONFIG = 2 };

/* What an output answers for one batch; the core retries on GW_OUT_RETRY. */
typedef enum { GW_OUT_OK = 0, GW_OUT_RETRY = 1, GW_OUT_ERROR = 2 } gw_out_rc;

/* Static string for a GW_E* code; never NULL. Thread: any. */
const char *gw_strerror(int err);

#endif
