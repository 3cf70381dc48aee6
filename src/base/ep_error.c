#include "base/ep_error.h"

#include <string.h>

const char *ep_strerror(int err)
{
    switch (err) {
    case EP_OK:
        return "success";
#define XX(name, val, msg)                                                                         \
    case EP_##name:                                                                                \
        return msg;
        EP_ERRNO_MAP(XX)
#undef XX
    default:
        return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
    }
}

const char *ep_err_name(int err)
{
    switch (err) {
    case EP_OK:
        return "EP_OK";
#define XX(name, val, msg)                                                                         \
    case EP_##name:                                                                                \
        return "EP_" #name;
        EP_ERRNO_MAP(XX)
#undef XX
    default:
        return "EP_UNKNOWN";
    }
}
