#!/usr/bin/env bash
# 45: the gateway killed with SIGKILL at random moments (12 times) while the upstream
# broker is down and alarm events pile up in the outbox; then the broker comes up and
# the last run drains: a verifying QoS 1 subscriber sees every seq from 1 to the
# outbox's last seq, one event_id each, per alarm raised / cleared alternating (no
# second raise, no lost clear across the kills), the store never quarantined, the
# outbox empty, the retained alarm states matching the events.
# The body is tests/integration/data/delivery-kill9.sh.
. "$(dirname "$0")/../harness/lib.sh"
BROKER_RESTARTS=0
. "$CITYGATE_SRC/tests/integration/data/delivery-kill9.sh"
