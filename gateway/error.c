#include "error.h"

const char *gw_strerror(int err)
{
    switch (err) {
    case GW_OK: return "success";
    case GW_ENOMEM: return "out of memory";
    case GW_EINVAL: return "invalid argument";
    case GW_EIO: return "input/output error";
    case GW_ECONFIG: return "configuration error";
    case GW_ETIMEDOUT: return "timed out";
    case GW_EFULL: return "full";
    case GW_ECLOSED: return "closed";
    case GW_ENOTFOUND: return "not found";
    case GW_EDECODE: return "decode error";
    case GW_EPROTO: return "protocol error";
    case GW_ECORRUPT: return "corrupt store";
    case GW_EAGAIN: return "try again";
    case GW_EABI: return "plugin ABI mismatch";
    default: return "unknown error";
    }
}
