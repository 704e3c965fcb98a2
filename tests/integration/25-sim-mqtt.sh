#!/usr/bin/env bash
# citygate-sim's MQTT side against a real mosquitto: ChirpStack v4 uplinks on the topic
# the subscription pattern implies, with devEui, object fields in plausible ranges, an
# RFC 3339 time and a Milesight-style TLV in data; a plain-JSON subscription gets the key
# at its device_key path; a silent device publishes nothing; the interval holds; a broker
# restart is survived.
. "$(dirname "$0")/../harness/lib.sh"

SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
start_mosquitto

cat >"$T/cfg.json" <<EOF
{"gateway": {"id": "GW-SIM-MQTT", "admin_code": "500103"},
 "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$CITYGATE_SRC/rules"},
 "mqtt_sources": [
   {"id": "lora", "url": "$MQTT_URL",
    "subscriptions": [{"topic": "application/+/device/{dev_eui}/event/up", "decoder": "chirpstack"}]},
   {"id": "plain", "url": "$MQTT_URL",
    "subscriptions": [{"topic": "city/sensors/json", "decoder": "json", "device_key": "meta.id"}]}],
 "devices": [
   {"id": "mh-0101", "kind": "manhole", "interval_ms": 500,
    "mqtt": {"source": "lora", "key": "24e124713b100001"},
    "component": {"code": "5001030103000101", "grid": "500103001002004"},
    "params": {"well_depth_m": 3.0}},
   {"id": "mh-0102", "kind": "manhole", "interval_ms": 500,
    "mqtt": {"source": "lora", "key": "24e124713b100002"},
    "component": {"code": "5001030103000102", "grid": "500103001002004"}},
   {"id": "water-0201", "kind": "water", "interval_ms": 500,
    "mqtt": {"source": "plain", "key": "w-201"},
    "component": {"code": "5001030101000201", "grid": "500103001002004"}}],
 "outputs": {"mqtt": {"enabled": false}, "influxdb": {"enabled": false}},
 "http": {"enabled": false}}
EOF
cat >"$T/sc.json" <<'EOF'
{"steps": [{"at": "0s", "device": "mh-0102", "silent": true},
           {"at": "0s", "device": "mh-0101", "set": {"tilt_deg": 21.5}}]}
EOF

start_bg sub mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t 'application/#' -t 'city/#'
sleep 0.3
start_bg sim "$SIM" -c "$T/cfg.json" --scenario "$T/sc.json"
wait_for "grep -q 'citygate-sim: ready' $T/sim.log" 10 || fail "no ready line"
wait_for "[[ \$(grep -c '^application/' $T/sub.log) -ge 6 ]]" 15 || fail "fewer than 6 uplinks in 15 s"

"$PYTHON" - "$T/sub.log" <<'EOF' || fail "uplink checks failed"
import base64, datetime, json, sys
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if " " in l]
bad = []
ups = [(t, json.loads(p)) for t, p in (l.split(" ", 1) for l in lines) if t.startswith("application/")]
plain = [(t, json.loads(p)) for t, p in (l.split(" ", 1) for l in lines) if t.startswith("city/")]
for topic, u in ups:
    parts = topic.split("/")
    if len(parts) != 6 or parts[2] != "device" or parts[4:] != ["event", "up"]:
        bad.append("topic " + topic)
    eui = u["deviceInfo"]["devEui"]
    if eui != parts[3] or eui != "24e124713b100001":
        bad.append("devEui %s on %s (the silent device published?)" % (eui, topic))
    datetime.datetime.fromisoformat(u["time"].replace("Z", "+00:00"))
    o = u["object"]
    if o["tilt_deg"] != 21.5: bad.append("tilt_deg %s, scripted 21.5" % o["tilt_deg"])
    if o["cover_open"] is not False: bad.append("cover_open %s" % o["cover_open"])
    if not 0 <= o["ch4_lel"] <= 3: bad.append("ch4_lel %s" % o["ch4_lel"])
    if not 85 <= o["battery_pct"] <= 95: bad.append("battery_pct %s" % o["battery_pct"])
    if abs(o["distance"] - (3.0 - o["water_level_m"]) * 1000) > 1: bad.append("distance %s" % o["distance"])
    raw = base64.b64decode(u["data"])
    if raw[:2] != b"\x01\x75" or raw[3:5] != b"\x03\xcf":
        bad.append("data TLV %s" % raw.hex())
    angle_y = int.from_bytes(raw[7:9], "little", signed=True) / 100
    if abs(angle_y - 21.5) > 0.01: bad.append("TLV angle_y %s" % angle_y)
    for k in ("deduplicationId", "fCnt", "fPort", "rxInfo", "txInfo", "devAddr"):
        if k not in u: bad.append("missing " + k)
fcnts = [u["fCnt"] for _, u in ups]
if fcnts != list(range(fcnts[0], fcnts[0] + len(fcnts))): bad.append("fCnt not consecutive: %s" % fcnts)
if not plain: bad.append("no plain-JSON message")
for t, p in plain:
    if t != "city/sensors/json" or p.get("meta", {}).get("id") != "w-201" or "pressure_mpa" not in p:
        bad.append("plain message %s %s" % (t, p))
    elif not 0.25 <= p["pressure_mpa"] <= 0.35:
        bad.append("plain pressure %s" % p["pressure_mpa"])
print("%d uplinks, %d plain messages" % (len(ups), len(plain)))
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF

# Interval: 500 ms per device, so about 2 per second from the one talking LoRa device.
n0=$(grep -c '^application/' "$T/sub.log")
sleep 3
n1=$(grep -c '^application/' "$T/sub.log")
((n1 - n0 >= 4 && n1 - n0 <= 8)) || fail "$((n1 - n0)) uplinks in 3 s at 500 ms interval"

# The broker goes away and comes back: the simulator reconnects and publishes again.
restart_mosquitto
stop_bg sub
start_bg sub2 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t 'application/#'
wait_for "grep -q '^application/' $T/sub2.log" 15 || fail "no uplink after the broker restart"
grep -q "connected to $MQTT_URL" "$T/sim.log" || fail "no reconnect logged"
stop_bg sim
[[ $STOP_RC == 0 ]] || fail "sim exit status $STOP_RC on SIGTERM"
grep -q "uplinks published" "$T/sim.log" || fail "no totals at exit"
info "PASS"
