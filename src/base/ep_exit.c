#include "base/ep_exit.h"

#include <stdatomic.h>

static _Atomic int exit_fast;

void ep_exit_fast_request(void)
{
    atomic_store(&exit_fast, 1);
}

int ep_exit_fast_requested(void)
{
    return atomic_load(&exit_fast);
}
