#!/usr/bin/env bash
# 45 (variant): as 45-gateway-kill9.sh, and during the drain the broker is restarted
# four times (SIGTERM, SIGKILL, SIGTERM, SIGKILL) while events keep being committed;
# the broker and the verifier's session are persistent, and the restarts are spaced so
# the verifier has reconnected before the next one (what a SIGKILLed broker acknowledged
# but never saved is outside the gateway's guarantee: reference/delivery.md §1.6).
# The body is tests/integration/data/delivery-kill9.sh.
. "$(dirname "$0")/../harness/lib.sh"
BROKER_RESTARTS=1
. "$CITYGATE_SRC/tests/integration/data/delivery-kill9.sh"
