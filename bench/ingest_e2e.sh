#!/usr/bin/env bash
# MQTT ingest end to end, messages/s: the real gateway (`citygate run`, no outputs: the
# samples go through ingest -> decoder chain -> sample queue -> engine (rules) -> store
# and stop there) against `mosquitto_sub -C N > /dev/null`, in the same run, all
# draining the same N QoS 1 messages from a private mosquitto on 127.0.0.1.
#
#   bench/ingest_e2e.sh [N] [ROUNDS]      (default 100000 messages, 3 rounds)
#
# Consumers (each has its own persistent session, so each drains its own copy):
#   mosquitto_sub   `mosquitto_sub -c -q 1 -C N > /dev/null`: process start to exit, less
#                   the time the same mosquitto_sub takes to connect and subscribe (-E);
#   bare Paho       bench_ingest_e2e paho: a Paho MQTTAsync subscriber doing nothing —
#                   the ceiling of the client library the gateway uses;
#   citygate core   bench_ingest_e2e core: gw_ingest (Paho thread -> inbox -> decode
#                   thread) + gw_decode_message + the samples of each inbox batch pushed
#                   at once (as gateway.c) + a draining thread, linked from citygate_core;
#   citygate run    the real binary: from the first message seen on /metrics (polled
#                   every 5 ms over one keep-alive connection: a finer poll costs the
#                   2-core box more CPU than it resolves) until the engine has taken
#                   every sample (citygate_engine_samples_total); start-up not counted.
# Method: with every consumer offline, a raw-socket publisher (the approach of
# bench/bench_mqtt_ingest.c: pre-built MQTT 3.1.1 PUBLISH packets written in 1 MiB
# chunks, PUBACKs drained) puts N QoS 1 messages into the broker, which queues them for
# each session; then each consumer is started alone and drains its queue, so neither
# the publisher nor another consumer is measured. The broker keeps its default inflight
# window (20). Payloads: a ChirpStack v4 uplink with base64 EM310-TILT TLV data
# (chirpstack envelope chained to the manhole decoder: 4 samples) and a plain JSON row
# by device-key path with the json decoder's field map (3 samples), over 100 devices
# each. The best of ROUNDS is reported per consumer. Goal: citygate >= 70 % of
# mosquitto_sub. Needs a build (CITYGATE_BUILD, default build/) with bench_ingest_e2e.
set -euo pipefail
N=${1:-100000}
ROUNDS=${2:-3}
HARNESS_TIMEOUT=0
HARNESS_QUIET=${HARNESS_QUIET:-1}
# shellcheck source=../tests/harness/lib.sh
. "$(dirname "$0")/../tests/harness/lib.sh"
need_citygate
DRAIN=${BENCH_DRAIN:-$CITYGATE_BUILD/bench/bench_ingest_e2e}
[[ -x $DRAIN ]] || fail "not built: $DRAIN (cmake --build ... --target bench_ingest_e2e)"

# A private broker: the default inflight window (20) as deployed, room for the backlog.
MQTT_PORT=$(free_port)
export MQTT_PORT
MQTT_URL="tcp://127.0.0.1:$MQTT_PORT"
cat >"$T/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
persistence false
log_dest file $T/mosquitto.log
max_queued_messages 0
EOF
start_bg mosquitto mosquitto -c "$T/mosquitto.conf"
wait_port "$MQTT_PORT" 10 || fail "mosquitto did not listen"
HTTP_PORT=$(free_port)
mkdir -p "$T/plugins"

"$PYTHON" - "$T/cfg.json" "$MQTT_URL" "$HTTP_PORT" "$T" "$CITYGATE_SRC" <<'EOF'
import json, sys
cfg_path, url, http_port, tmp, src = sys.argv[1:6]
devices = []
for i in range(100):
    devices.append({"id": "mh-%04d" % i, "kind": "manhole", "interval_ms": 60000,
                    "mqtt": {"source": "lora", "key": "24e1247130%06x" % i, "decoder": "manhole"},
                    "component": {"code": "500103010200%04d" % i}, "params": {"well_depth_m": 2.5}})
    devices.append({"id": "wm-%04d" % i, "kind": "water", "interval_ms": 60000,
                    "mqtt": {"source": "lora", "key": "w-%d" % i,
                             "options": {"fields": {
                                 "pressure_mpa": {"path": "data.p_kpa", "scale": 0.001, "unit": "MPa"},
                                 "level_m": {"path": "data.level_mm", "scale": 0.001, "unit": "m"},
                                 "pump_on": {"path": "data.pump", "type": "bool"}},
                                 "timestamp": {"path": "ts", "format": "epoch_ms"}}},
                    "component": {"code": "500103010100%04d" % i}})
cfg = {"gateway": {"id": "GW-BENCH", "admin_code": "500103", "data_dir": tmp + "/data",
                   "log_level": "notice"},
       "paths": {"rules": src + "/rules", "plugins": tmp + "/plugins"},
       "mqtt_sources": [{"id": "lora", "url": url, "client_id": "bench-citygate",
                         "subscriptions": [
                             {"topic": "application/+/device/{dev_eui}/event/up", "decoder": "chirpstack"},
                             {"topic": "city/sensors/json", "decoder": "json", "device_key": "meta.id"}]}],
       "devices": devices,
       "outputs": {"mqtt": {"enabled": False}, "influxdb": {"enabled": False}},
       "http": {"enabled": True, "listen": "127.0.0.1", "port": int(http_port)}}
json.dump(cfg, open(cfg_path, "w"), indent=1)
for name in ("core",):
    cfg["mqtt_sources"][0]["client_id"] = "bench-" + name
    json.dump(cfg, open(cfg_path.replace("cfg.json", name + ".json"), "w"), indent=1)
EOF
"$CITYGATE_BIN" check -c "$T/cfg.json" >"$T/check.out" 2>&1 || fail "check: $(cat "$T/check.out")"

SUB_TOPICS=(-t 'application/+/device/+/event/up' -t city/sensors/json)

# The helper: publish FORMAT N | run-sub N | run-gateway N SAMPLES_PER_MESSAGE.
cat >"$T/bench.py" <<'EOF'
import base64, http.client, json, os, socket, struct, subprocess, sys, threading, time

port = int(os.environ["MQTT_PORT"])

def enc_len(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def publish(fmt, n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = b"bench-pub"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    s.sendall(b"\x10" + enc_len(len(var)) + var)
    if s.recv(4)[3] != 0:
        sys.exit("publisher: connection refused")
    def drain():
        while s.recv(65536):
            pass
    t = threading.Thread(target=drain)
    t.start()
    now_ms = int(time.time() * 1000)
    buf, pid = bytearray(), 0
    for i in range(n):
        d = i % 100
        if fmt == "chirpstack":
            eui = "24e1247130%06x" % d
            topic = ("application/17c82e96/device/%s/event/up" % eui).encode()
            data = base64.b64encode(bytes([0x01, 0x75, 80 + i % 20, 0x03, 0xCF]) +
                                    struct.pack("<hhh", 0, 150 + i % 100, 8850 - i % 100) + b"\0").decode()
            t_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000)) + ".%03dZ" % (i % 1000)
            payload = json.dumps({
                "deduplicationId": "3ac7e3c4-4401-4b8d-9386-%012x" % i, "time": t_iso,
                "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "ChirpStack",
                               "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97", "applicationName": "city",
                               "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
                               "deviceProfileName": "EM310-TILT", "deviceName": "mh-%04d" % d,
                               "devEui": eui, "tags": {}},
                "devAddr": "00189440", "adr": True, "dr": 5, "fCnt": i, "fPort": 85, "confirmed": False,
                "rxInfo": [{"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255 + i, "rssi": -91 - i % 7,
                            "snr": 7.5, "channel": 2, "location": {}, "context": "EFwMtA=="}],
                "txInfo": {"frequency": 486300000, "modulation": {"lora": {"bandwidth": 125000,
                           "spreadingFactor": 7, "codeRate": "CR_4_5"}}},
                "data": data}).encode()
        else:
            topic = b"city/sensors/json"
            payload = json.dumps({"meta": {"id": "w-%d" % d}, "ts": now_ms - n + i,
                                  "data": {"p_kpa": 300 + i % 50, "level_mm": 1200 + i % 30,
                                           "pump": i % 2}}).encode()
        pid = pid % 65535 + 1
        body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", pid) + payload
        buf += b"\x32" + enc_len(len(body)) + body
        if len(buf) > 1 << 20:
            s.sendall(buf)
            buf = bytearray()
    s.sendall(bytes(buf) + b"\xe0\x00")
    t.join()
    s.close()

def run_sub(n, args):
    t0 = time.monotonic()
    subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", "bench-probe",
                    "-q", "1", "-t", "bench/probe", "-E"], check=True, timeout=60)
    connect = time.monotonic() - t0
    t0 = time.monotonic()
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-c", "-i", "bench-sub",
                        "-q", "1", "-C", str(n)] + args, stdout=subprocess.DEVNULL, timeout=600)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("mosquitto_sub exited %d" % r.returncode)
    print("%d %.6f" % (n, dt - connect))

def run_gateway(n, per_msg, cmd, http_port):
    p = subprocess.Popen(cmd, stdout=open(os.environ["T"] + "/gateway.log", "a"), stderr=subprocess.STDOUT)
    conn = None
    def metrics():
        nonlocal conn
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            conn = None
            return None
        m = {}
        for line in body.splitlines():
            if line and line[0] != "#":
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        return m
    t0 = t1 = None
    want = n * per_msg
    if n == 0: # only register the session: connect, subscribe, go
        while (m := metrics()) is None or m.get('citygate_mqtt_ingest_connected{source="lora"}') != 1:
            if p.poll() is not None:
                sys.exit("citygate exited %d" % p.returncode)
            time.sleep(0.01)
        time.sleep(0.5)
        p.terminate()
        p.wait(timeout=30)
        return
    deadline = time.monotonic() + 600
    m = {}
    while time.monotonic() < deadline:
        if p.poll() is not None:
            sys.exit("citygate exited %d" % p.returncode)
        m = metrics()
        now = time.monotonic()
        if m:
            matched = m.get('citygate_mqtt_ingest_messages_total{source="lora",outcome="matched"}', 0)
            if t0 is None and matched > 0:
                t0 = now
            if m.get("citygate_engine_samples_total", 0) >= want:
                t1 = now
                break
        time.sleep(0.005)
    p.terminate()
    p.wait(timeout=30)
    if t1 is None or t0 is None:
        sys.exit("citygate did not take all samples: %s" % {k: v for k, v in (m or {}).items() if "ingest" in k or "engine_samples" in k})
    bad = m.get("citygate_decode_bad_payloads_total", 0)
    deferred = m.get('citygate_mqtt_ingest_messages_total{source="lora",outcome="deferred"}', 0)
    print("%d %.6f %d %d" % (int(m['citygate_mqtt_ingest_messages_total{source="lora",outcome="matched"}']),
                             t1 - t0, bad, deferred))

what = sys.argv[1]
if what == "publish":
    publish(sys.argv[2], int(sys.argv[3]))
elif what == "sub":
    run_sub(int(sys.argv[2]), sys.argv[3:])
else:
    run_gateway(int(sys.argv[2]), int(sys.argv[3]), sys.argv[5:], int(sys.argv[4]))
EOF

# Register the persistent sessions (subscribed, then offline).
FILTERS=('application/+/device/+/event/up' city/sensors/json)
for id in bench-citygate bench-core bench-paho; do
    "$DRAIN" paho "$MQTT_URL" "$id" 0 "${FILTERS[@]}" || fail "cannot register session $id"
done
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -c -i bench-sub -q 1 "${SUB_TOPICS[@]}" -E

printf 'MQTT ingest end to end, %d QoS 1 messages per round, best of %d rounds, private mosquitto on 127.0.0.1:%d\n\n' \
    "$N" "$ROUNDS" "$MQTT_PORT"
printf '| payload | consumer | received | seconds | msgs/s | vs mosquitto_sub |\n|---|---|---|---|---|---|\n'
# best NAME GOT SECS: keep the fastest round of consumer NAME.
declare -A BEST_RATE BEST_LINE
best() {
    local rate
    rate=$("$PYTHON" -c "print(int($2 / $3) if $3 > 0 else 0)")
    if ((rate > ${BEST_RATE[$1]:-0})); then
        BEST_RATE[$1]=$rate
        BEST_LINE[$1]="$2 $3"
    fi
}
row() { # row FORMAT NAME LABEL
    local got secs
    read -r got secs <<<"${BEST_LINE[$2]}"
    printf '| %s | %s | %d | %.3f | %d | %d %% |\n' "$1" "$3" "$got" "$secs" "${BEST_RATE[$2]}" \
        $((100 * BEST_RATE[$2] / BEST_RATE[sub]))
}
for fmt in chirpstack json; do
    per=4
    [[ $fmt == json ]] && per=3
    BEST_RATE=() BEST_LINE=()
    for ((r = 1; r <= ROUNDS; r++)); do
        "$PYTHON" "$T/bench.py" publish "$fmt" "$N"
        read -r got secs < <("$PYTHON" "$T/bench.py" sub "$N" "${SUB_TOPICS[@]}")
        [[ $got == "$N" ]] || fail "mosquitto_sub: $got of $N"
        best sub "$got" "$secs"
        read -r got secs < <("$DRAIN" paho "$MQTT_URL" bench-paho "$N") || fail "bare Paho failed"
        best paho "$got" "$secs"
        read -r got secs < <("$DRAIN" core "$T/core.json" "$N" "$per") || fail "citygate core failed"
        best core "$got" "$secs"
        read -r got secs bad deferred < <("$PYTHON" "$T/bench.py" gateway "$N" "$per" "$HTTP_PORT" \
            "$CITYGATE_BIN" run -c "$T/cfg.json")
        [[ $got == "$N" && $bad == 0 ]] || fail "citygate matched $got of $N, $bad bad payloads"
        ((deferred == 0)) || info "citygate deferred $deferred deliveries (sample queue full)"
        best run "$got" "$secs"
    done
    row "$fmt" sub 'mosquitto_sub -C N > /dev/null'
    row "$fmt" paho 'bare Paho MQTTAsync subscriber (no work)'
    row "$fmt" core "citygate core: ingest + decode ($per samples/msg) + sample queue"
    row "$fmt" run 'citygate run: + engine (rules) + store, no outputs'
done
