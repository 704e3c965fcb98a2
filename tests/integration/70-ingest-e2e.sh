#!/usr/bin/env bash
# 70: MQTT ingest end to end through the real gateway (`citygate run`): mosquitto_pub ->
# ingest -> decoder chain -> sample queue -> engine -> store (/api/devices) and InfluxDB.
#   1. every payload format becomes the right samples (value, unit, quality, age):
#      ChirpStack v4 base64 `data` (EM310-TILT TLV) and decoded `object` (EM400-MUD, gas),
#      The Things Stack v3 `frm_payload` (manhole) and `decoded_payload` (lamp, with the
#      derived energy delta and should_be_on), plain JSON by device-key path with the json
#      decoder's field map and time stamp, and plain JSON with a device decoder (gas);
#   2. bad input — malformed JSON, wrong types, payloads over max_payload, invalid base64,
#      unknown devices — is counted in /metrics by outcome and reason, logged once (not
#      per message), never crashes the gateway, and the good message right after each
#      bad one arrives;
#   3. the gateway restarts (SIGTERM, start again) while a publisher keeps sending N
#      numbered QoS 1 messages: all N reach InfluxDB (count and distinct values), the
#      ingest session is resumed;
#   4. the broker restarts: the gateway connects and subscribes again and ingests.
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

DATA=$CITYGATE_SRC/tests/integration/data
N_RESTART=${N_RESTART:-1000}

start_mosquitto
start_influxd
HTTP_PORT=$(free_port)
mkdir -p "$T/plugins" # empty: the built-in decoders, not a system-wide install

# Lamp schedule around now (UTC), so should_be_on is true whenever the test runs.
ON=$(date -u -d '-60 min' +%H:%M)
OFF=$(date -u -d '+60 min' +%H:%M)

cat >"$T/cfg.json" <<EOF
{"gateway": {"id": "GW-T70", "admin_code": "500103", "data_dir": "$T/data", "log_level": "info"},
 "paths": {"rules": "$CITYGATE_SRC/rules", "plugins": "$T/plugins"},
 "mqtt_sources": [
   {"id": "lora", "url": "$MQTT_URL", "client_id": "t70-ingest", "mqtt_version": 3,
    "keepalive_s": 10, "max_payload": 4096,
    "subscriptions": [
      {"topic": "application/+/device/{dev_eui}/event/up", "decoder": "chirpstack", "qos": 1},
      {"topic": "v3/+/devices/{device_id}/up", "decoder": "ttn", "qos": 1},
      {"topic": "city/sensors/json", "decoder": "json", "device_key": "meta.id", "qos": 1}]}],
 "devices": [
   {"id": "mh-0101", "kind": "manhole", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "24e124713b100001", "decoder": "manhole",
             "options": {"reference_tilt_deg": 0}},
    "component": {"code": "5001030102000101", "grid": "500103001002003"},
    "params": {"well_depth_m": 2.5}},
   {"id": "mh-0102", "kind": "manhole", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "24e124713b100002", "decoder": "manhole"},
    "component": {"code": "5001030103000102", "grid": "500103001002003"},
    "params": {"well_depth_m": 2.5}},
   {"id": "mh-0103", "kind": "manhole", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "mh-0103", "decoder": "manhole"},
    "component": {"code": "5001030102000103"}},
   {"id": "lamp-0201", "kind": "lamp", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "lamp-0201", "decoder": "lamp",
             "options": {"mode": "schedule", "on_time": "$ON", "off_time": "$OFF",
                         "utc_offset_min": 0}},
    "component": {"code": "5001030118000201",
                  "location": {"lon": 106.577, "lat": 29.557}},
    "params": {"rated_power_w": 40}},
   {"id": "water-0301", "kind": "water", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "w-301",
             "options": {"fields": {
                 "pressure_mpa": {"path": "data.p_kpa", "scale": 0.001, "unit": "MPa"},
                 "level_m": {"path": "data.level_mm", "scale": 0.001, "unit": "m"},
                 "flow_m3h": {"path": "data.flow[1]", "unit": "m3/h"},
                 "pump_on": {"path": "data.pump", "type": "bool"},
                 "state": {"path": "state", "type": "text"}},
               "timestamp": {"path": "ts", "format": "rfc3339"}}},
    "component": {"code": "5001030101000301"}},
   {"id": "gas-0401", "kind": "gas", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "24e1247140000401", "decoder": "gas"},
    "component": {"code": "5001030111000401"}},
   {"id": "gas-0402", "kind": "gas", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "g-402", "decoder": "gas",
             "options": {"ch4_unit": "vol"}},
    "component": {"code": "5001030111000402"}},
   {"id": "ctr-0901", "kind": "counter", "interval_ms": 60000,
    "mqtt": {"source": "lora", "key": "ctr-1",
             "options": {"fields": {"n": {"path": "n"}},
                         "timestamp": {"path": "ts", "format": "epoch_ms"}}},
    "component": {"code": "5001030101000901"}}],
 "outputs": {"mqtt": {"enabled": false},
             "influxdb": {"enabled": true, "url": "$INFLUX_URL", "version": 1,
                          "database": "citygate", "precision": "us", "flush_ms": 100}},
 "http": {"enabled": true, "listen": "127.0.0.1", "port": $HTTP_PORT}}
EOF

"$CITYGATE_BIN" check -c "$T/cfg.json" >"$T/check.out" 2>&1 ||
    fail "citygate check refused the config: $(cat "$T/check.out")"

# ---- helpers ---------------------------------------------------------------------------

GW_N=0
start_gateway() {
    GW_N=$((GW_N + 1))
    GW=gw$GW_N
    start_bg "$GW" "$CITYGATE_BIN" run -c "$T/cfg.json"
    wait_for "[[ \$(metric 'citygate_mqtt_ingest_connected{source=\"lora\"}') == 1 ]] || ! pid_alive $BG_PID" 20 ||
        fail "$GW: ingest not connected within 20 s"
    pid_alive "$BG_PID" || fail "$GW exited at start"
    sleep 0.3 # SUBACK follows CONNACK
}
stop_gateway() {
    stop_bg "$GW" TERM 15 || fail "$GW did not stop within 15 s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "$GW exited $STOP_RC on SIGTERM"
}

api() { curl -sS --fail --max-time 5 "http://127.0.0.1:$HTTP_PORT$1"; }
# metric 'name{labels}': its value in /metrics (empty when absent).
metric() { api /metrics 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }'; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 "$@"; }
now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# point_ok DEV FIELD VALUE UNIT QUALITY: /api/devices shows that value (numbers within
# 1e-9 relative; true/false; text), unit and quality, with an age of 0..15 s.
point_ok() {
    api /api/devices | "$PYTHON" -c '
import json, sys
dev, field, want, unit, quality = sys.argv[1:6]
devs = {d["id"]: d for d in json.load(sys.stdin)}
p = devs.get(dev, {}).get("values", {}).get(field)
if p is None:
    sys.exit("%s.%s: no value" % (dev, field))
v = p["value"]
if want in ("true", "false"):
    ok = v is (want == "true")
elif isinstance(v, str):
    ok = v == want
else:
    w = float(want)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v - w) <= 1e-9 * max(1.0, abs(w))
age = p.get("age_s")
if not ok or p["unit"] != unit or p["quality"] != quality or age is None or not -1 <= age <= 15:
    sys.exit("%s.%s: got %r %r %r age %r, want %s %r %s" % (dev, field, v, p["unit"], p["quality"], age, want, unit, quality))
' "$@"
}
expect_point() {
    wait_for "point_ok $(printf '%q ' "$@")" 10 ||
        fail "$(point_ok "$@" 2>&1 || true)"
}

# influx_value Q: the first value of the first row of InfluxQL query Q (empty if none).
influx_value() {
    influx_query "$1" | "$PYTHON" -c '
import json, sys
r = json.load(sys.stdin)["results"][0]
s = r.get("series")
print(s[0]["values"][0][1] if s else "")'
}

# ChirpStack EM310-TILT uplink for mh-0101 with a battery and a tilt angle (about y).
em310_b64() {
    "$PYTHON" -c '
import base64, math, struct, sys
bat, tilt = int(sys.argv[1]), float(sys.argv[2])
ay, az = round(tilt * 100), round((90 - tilt) * 100)
print(base64.b64encode(bytes([0x01, 0x75, bat, 0x03, 0xCF]) + struct.pack("<hhh", 0, ay, az) + b"\0").decode())' "$1" "$2"
}
cs_em310() { # cs_em310 BATTERY TILT [DATA]
    local data=${3:-$(em310_b64 "$1" "$2")}
    sed "s/@TIME@/$(now_rfc3339)/g; s#@DATA@#$data#" "$DATA/ingest-chirpstack-em310.json" |
        pub -t application/17c82e96/device/24e124713b100001/event/up -s
}
water() { # water P_KPA [EXTRA JSON MEMBERS]
    pub -t city/sensors/json -m "{\"meta\":{\"id\":\"w-301\"},\"ts\":\"$(now_rfc3339)\",\"state\":\"running\",\"data\":{\"p_kpa\":$1,\"level_mm\":1250,\"flow\":[0,12.5],\"pump\":1}${2:+,$2}}"
}

start_gateway

# ---- 1. every format -----------------------------------------------------------------------

info "1. payload formats"
# ChirpStack v4, base64 data -> manhole TLV; the strongest gateway's RSSI/SNR.
cs_em310 77 35.5
expect_point mh-0101 tilt_deg 35.5 deg good
expect_point mh-0101 battery_pct 77 % good
expect_point mh-0101 rssi_dbm -91 dBm good
expect_point mh-0101 snr_db 7.5 dB good

# ChirpStack v4 with a codec: the decoded object (EM400-MUD) -> manhole; upper-case EUI.
sed "s/@TIME@/$(now_rfc3339)/g" "$DATA/ingest-chirpstack-em400-object.json" |
    pub -t application/17c82e96/device/24E124713B100002/event/up -s
expect_point mh-0102 distance_m 2.116 m good
expect_point mh-0102 water_level_m 0.384 m good
expect_point mh-0102 temperature_c 25.7 °C good
expect_point mh-0102 battery_pct 92 % good
expect_point mh-0102 cover_open true "" good
expect_point mh-0102 rssi_dbm -88 dBm good

# ChirpStack v4 object -> gas: ppm to %LEL.
sed "s/@TIME@/$(now_rfc3339)/g" "$DATA/ingest-chirpstack-gas-object.json" |
    pub -t application/17c82e96/device/24e1247140000401/event/up -s
expect_point gas-0401 ch4_lel 10 %LEL good
expect_point gas-0401 h2s_ppm 3.5 ppm good
expect_point gas-0401 o2_pct 20.9 %VOL good
expect_point gas-0401 battery_pct 80 % good

# The Things Stack v3: frm_payload -> manhole (topic v3/{app}@{tenant}/devices/{id}/up).
sed "s/@TIME@/$(now_rfc3339)/g" "$DATA/ingest-ttn-em310.json" | pub -t v3/city@ttn/devices/mh-0103/up -s
expect_point mh-0103 tilt_deg 20 deg good
expect_point mh-0103 battery_pct 92 % good
expect_point mh-0103 rssi_dbm -103 dBm good
expect_point mh-0103 snr_db -2.25 dB good

# The Things Stack v3: decoded_payload -> lamp; two reports give the energy delta.
ttn_lamp() {
    sed "s/@TIME@/$(now_rfc3339)/g; s/@FCNT@/$1/; s/@ENERGY@/$2/" "$DATA/ingest-ttn-lamp.json" |
        pub -t v3/city@ttn/devices/lamp-0201/up -s
}
ttn_lamp 1 100.5
expect_point lamp-0201 energy_kwh 100.5 kWh good
ttn_lamp 2 100.75
expect_point lamp-0201 energy_kwh 100.75 kWh good
expect_point lamp-0201 energy_delta_kwh 0.25 kWh good
expect_point lamp-0201 voltage_v 221.5 V good
expect_point lamp-0201 current_a 0.18 A good
expect_point lamp-0201 power_w 38.5 W good
expect_point lamp-0201 power_factor 0.96 "" good
expect_point lamp-0201 relay_on true "" good
expect_point lamp-0201 should_be_on true "" good

# Plain JSON, device key by JSON path, json decoder field map (scale, unit, array index,
# bool, text) and an RFC 3339 time stamp.
water 312
expect_point water-0301 pressure_mpa 0.312 MPa good
expect_point water-0301 level_m 1.25 m good
expect_point water-0301 flow_m3h 12.5 m3/h good
expect_point water-0301 pump_on true "" good
expect_point water-0301 state running "" good

# Plain JSON with a device decoder (gas, CH4 in %VOL): 6 %VOL is 120 %LEL, out of range.
pub -t city/sensors/json -m '{"meta":{"id":"g-402"},"ch4":6.0,"co":12}'
expect_point gas-0402 ch4_lel 120 %LEL out_of_range
expect_point gas-0402 co_ppm 12 ppm good

# The same samples in InfluxDB (measurement = kind, tag device).
wait_for "[[ \$(influx_value \"SELECT last(tilt_deg) FROM manhole WHERE device='mh-0101'\") == 35.5 ]]" 15 ||
    fail "InfluxDB: mh-0101 tilt_deg is '$(influx_value "SELECT last(tilt_deg) FROM manhole WHERE device='mh-0101'")', want 35.5"
wait_for "[[ \$(influx_value \"SELECT last(energy_delta_kwh) FROM lamp WHERE device='lamp-0201'\") == 0.25 ]]" 15 ||
    fail "InfluxDB: lamp-0201 energy_delta_kwh missing"
wait_for "[[ \$(influx_value \"SELECT last(pressure_mpa) FROM water WHERE device='water-0301'\") == 0.312 ]]" 15 ||
    fail "InfluxDB: water-0301 pressure_mpa missing"
# MQTT devices are online while their reports keep coming.
health_of() {
    api /api/devices | "$PYTHON" -c 'import json, sys
print({d["id"]: d["health"] for d in json.load(sys.stdin)}.get(sys.argv[1]))' "$1"
}
for d in mh-0101 mh-0102 mh-0103 lamp-0201 water-0301 gas-0401 gas-0402; do
    wait_for "[[ \$(health_of $d) == online ]]" 5 || fail "$d: health $(health_of $d), want online"
done
[[ $(health_of ctr-0901) == unknown ]] || fail "ctr-0901 sent nothing yet: health $(health_of ctr-0901)"
[[ $(metric 'citygate_decode_bad_payloads_total') == 0 ]] ||
    fail "good payloads counted as bad: $(api /metrics | grep bad_payloads)"
info "every format decoded: $(metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="matched"}') messages matched"

# ---- 2. bad input: counted, logged once, dropped alone ------------------------------------

info "2. bad input"
GOOD=0
good_after() { # the good messages that must still arrive after a bad one
    GOOD=$((GOOD + 1))
    water $((1000 + GOOD))
    cs_em310 $GOOD 10
    expect_point water-0301 pressure_mpa "$(printf '%d.%03d' $(((1000 + GOOD) / 1000)) $(((1000 + GOOD) % 1000)))" MPa good
    expect_point mh-0101 battery_pct $GOOD % good
    pid_alive "$(bg_pid "$GW")" || fail "$GW died after bad input ($1)"
}
huge=$(head -c 6000 /dev/zero | tr '\0' 'x')
for i in 1 2 3; do
    pub -t city/sensors/json -m 'not json {{'; good_after "malformed JSON on a device-key topic"
    pub -t application/17c82e96/device/24e124713b100001/event/up -m '{"deviceInfo": {"devEui": '
    good_after "malformed JSON in a ChirpStack uplink"
    water '"high"'; good_after "a string where the field map wants a number"
    sed "s/@TIME@/$(now_rfc3339)/g; s/\"battery\": 92/\"battery\": \"full\"/" \
        "$DATA/ingest-chirpstack-em400-object.json" |
        pub -t application/17c82e96/device/24e124713b100002/event/up -s
    good_after "a string where the manhole decoder wants a number"
    cs_em310 0 0 'AXVc!!!*A88AANAHWBsA'; good_after "invalid base64 in ChirpStack data"
    pub -t application/17c82e96/device/24e124713b100001/event/up -m "{\"data\":\"$huge\"}"
    good_after "a payload over max_payload (ChirpStack topic)"
    pub -t city/sensors/json -m "{\"meta\":{\"id\":\"w-301\"},\"pad\":\"$huge\"}"
    good_after "a payload over max_payload (JSON topic)"
    sed "s/@TIME@/$(now_rfc3339)/g; s#@DATA@#AXVcA88AANAHWBsA#; s/24e124713b100001/ffffffffffffffff/" \
        "$DATA/ingest-chirpstack-em310.json" | pub -t application/17c82e96/device/ffffffffffffffff/event/up -s
    good_after "an unknown DevEUI"
    pub -t city/sensors/json -m '{"meta":{"id":"nobody"},"x":1}'; good_after "an unknown JSON device key"
done

expect_metric() { # expect_metric 'name{labels}' VALUE
    local got
    got=$(metric "$1")
    [[ $got == "$2" ]] || fail "metric $1 = '$got', want $2"
}
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="bad_json"}' 3
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="oversize"}' 6
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="unknown_device"}' 6
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="no_key"}' 0
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="rejected"}' 0
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="deferred"}' 0
expect_metric 'citygate_decode_bad_payloads_total' 12
expect_metric 'citygate_decode_bad_payloads_by_reason_total{reason="json"}' 3
expect_metric 'citygate_decode_bad_payloads_by_reason_total{reason="type"}' 6
expect_metric 'citygate_decode_bad_payloads_by_reason_total{reason="encoding"}' 3
expect_metric 'citygate_decode_bad_payloads_by_reason_total{reason="size"}' 0
expect_metric 'citygate_decode_bad_payloads_device_total{device="mh-0101",reason="json"}' 3
expect_metric 'citygate_decode_bad_payloads_device_total{device="mh-0101",reason="encoding"}' 3
expect_metric 'citygate_decode_bad_payloads_device_total{device="water-0301",reason="type"}' 3
expect_metric 'citygate_decode_bad_payloads_device_total{device="mh-0102",reason="type"}' 3
# matched: 8 format messages, 27 x 2 good ones, 12 that reached a decoder and failed there
expect_metric 'citygate_mqtt_ingest_messages_total{source="lora",outcome="matched"}' $((8 + 54 + 12))

# Logged once each: three of each kind came within seconds, interleaved with good ones.
logged_once() { # logged_once PATTERN WHAT
    local n
    n=$(grep -c -- "$1" "$T/$GW.log" || true)
    [[ $n == 1 ]] || fail "$2: logged $n times, want once ($(grep -- "$1" "$T/$GW.log" | head -5))"
}
logged_once 'dropped: invalid JSON' "malformed JSON on a device-key topic"
logged_once 'dropped: payload over max_payload' "payloads over max_payload"
logged_once 'unknown device key "ffffffffffffffff"' "unknown DevEUI"
logged_once 'unknown device key "nobody"' "unknown JSON device key"
logged_once 'device mh-0101: bad payload (json' "malformed ChirpStack JSON"
logged_once 'device mh-0101: bad payload (encoding' "invalid base64"
logged_once 'device water-0301: bad payload (type' "wrong type (json decoder)"
logged_once 'device mh-0102: bad payload (type' "wrong type (manhole decoder)"
info "bad input counted, logged once, dropped alone"

# ---- 3. gateway restart under QoS 1 load: no message lost -----------------------------------

info "3. gateway restart while $N_RESTART QoS 1 messages are published"
base_ms=$(($(date +%s%3N) - 60000)) # distinct, known time stamps
mkfifo "$T/pub.fifo"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -i t70-pub -t city/sensors/json -l \
    <"$T/pub.fifo" >>"$T/publisher.log" 2>&1 &
track_pid publisher $!
PUB_PID=$!
"$PYTHON" -c '
import sys, time
n, base = int(sys.argv[1]), int(sys.argv[2])
for i in range(1, n + 1):
    print("{\"meta\":{\"id\":\"ctr-1\"},\"ts\":%d,\"n\":%d}" % (base + i, i), flush=True)
    time.sleep(0.004)
' "$N_RESTART" "$base_ms" >"$T/pub.fifo" 2>>"$T/publisher.log" &
track_pid generator $!

count_q="SELECT count(n) FROM counter WHERE device='ctr-0901' AND time >= ${base_ms}ms"
wait_for "[[ \$(influx_value \"$count_q\") -ge 50 ]]" 15 || fail "no counter samples reached InfluxDB"
stop_gateway
info "gateway stopped at $(influx_value "$count_q") counter samples in InfluxDB"
sleep 0.7 # the broker queues for the persistent session meanwhile
start_gateway
grep -q 'session resumed' "$T/$GW.log" || fail "$GW: the ingest session was not resumed"
wait_for "! pid_alive $PUB_PID" 30 || fail "publisher did not finish"
wait "$PUB_PID" || fail "mosquitto_pub failed: $(cat "$T/publisher.log")"
wait_for "[[ \$(influx_value \"$count_q\") == $N_RESTART ]]" 30 ||
    fail "InfluxDB holds $(influx_value "$count_q") of $N_RESTART counter samples"
distinct=$(influx_value "SELECT count(distinct(n)) FROM counter WHERE device='ctr-0901' AND time >= ${base_ms}ms")
lo=$(influx_value "SELECT min(n) FROM counter WHERE device='ctr-0901' AND time >= ${base_ms}ms")
hi=$(influx_value "SELECT max(n) FROM counter WHERE device='ctr-0901' AND time >= ${base_ms}ms")
[[ $distinct == "$N_RESTART" && $lo == 1 && $hi == "$N_RESTART" ]] ||
    fail "counter values: $distinct distinct, min $lo, max $hi; want $N_RESTART, 1, $N_RESTART"
info "all $N_RESTART messages arrived across the gateway restart"

# ---- 4. broker restart: subscribe again, ingest again ----------------------------------------

info "4. broker restart"
stop_mosquitto
wait_for "[[ \$(metric 'citygate_mqtt_ingest_connected{source=\"lora\"}') == 0 ]]" 15 ||
    fail "the gateway did not notice the broker going away"
start_mosquitto "$MQTT_PORT"
wait_for "[[ \$(metric 'citygate_mqtt_ingest_connected{source=\"lora\"}') == 1 ]]" 30 ||
    fail "the gateway did not reconnect to the restarted broker"
# The restarted broker has no session: data arrives only if the gateway subscribed again.
k=0
until point_ok water-0301 pressure_mpa "$(printf '0.%03d' $((500 + k)))" MPa good 2>/dev/null; do
    k=$((k + 1))
    ((k < 20)) || fail "no ingest after the broker restart (no resubscribe?)"
    water $((500 + k))
    sleep 0.5
done
cs_em310 55 12.5
expect_point mh-0101 battery_pct 55 % good
expect_point mh-0101 tilt_deg 12.5 deg good
pid_alive "$(bg_pid "$GW")" || fail "$GW died"
stop_gateway
echo "PASS"
