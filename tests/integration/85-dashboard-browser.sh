#!/usr/bin/env bash
# The dashboard in a real headless Chromium (Debian's chromium, driven by playwright-core
# from npm) over the whole pipeline: mosquitto, citygate-sim playing
# data/dashboard-scenario.json, and `citygate run`. The page loads; it shows every
# configured device as a card (data-device) with live values and health, and the
# scenario's tilted cover as an active alarm row (data-alarm); the history chart draws
# with the locally served Dygraphs; clicking Acknowledge turns the alarm to
# active_acked (on the page and in /api/alarms, with an "acked" event). Screenshots are
# kept in $CITYGATE_BUILD/artifacts/ (dashboard.png; dashboard-failure.png on failure).
HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-200}
. "$(dirname "$0")/../harness/lib.sh"
need_citygate

SIM=${CITYGATE_SIM:-$CITYGATE_BUILD/devices/sim/citygate-sim}
CHROMIUM=${CITYGATE_CHROMIUM:-/usr/bin/chromium}
PW_VERSION=1.52.0 # supports Debian 12's nodejs 18 (engines: node >= 18)
PW_DIR=$CITYGATE_BUILD/npm/playwright-$PW_VERSION
ARTIFACTS=$CITYGATE_BUILD/artifacts
SCENARIO=$CITYGATE_SRC/tests/integration/data/dashboard-scenario.json
ALARM=mh-0001/cover-tilt

[[ -x $SIM ]] || fail "citygate-sim not built: $SIM"
[[ -x $CHROMIUM ]] || fail "chromium not installed at $CHROMIUM (Debian package chromium)"
command -v node >/dev/null || fail "node not installed (Debian package nodejs)"
[[ -f $SCENARIO ]] || fail "scenario missing: $SCENARIO"
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS/dashboard.png" "$ARTIFACTS/dashboard-acked.png" "$ARTIFACTS/dashboard-failure.png"

# ---- playwright-core, cached under the build dir ----------------------------------------
if [[ ! -f $PW_DIR/node_modules/playwright-core/package.json ]]; then
    command -v npm >/dev/null || fail "npm not installed (Debian package npm) and no cached playwright-core in $PW_DIR"
    info "installing playwright-core@$PW_VERSION into $PW_DIR"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PW_DIR" --no-audit --no-fund \
        --loglevel=error "playwright-core@$PW_VERSION" >"$T/npm.log" 2>&1 ||
        fail "npm install playwright-core@$PW_VERSION failed: $(tail -n 5 "$T/npm.log")"
fi
PW_MODULE=$PW_DIR/node_modules/playwright-core

# ---- the pipeline ---------------------------------------------------------------------------
start_mosquitto
MB_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$T/etc"
CONFIG=$T/etc/citygate.json
cat >"$CONFIG" <<EOF
{
  "gateway": {"id": "GW-500103-0085", "name": "dashboard browser test", "admin_code": "500103",
              "data_dir": "$T/data", "timezone": "+08:00", "log_level": "info"},
  "paths": {"profiles": "$CITYGATE_SRC/devices", "rules": "$CITYGATE_SRC/rules"},
  "buses": [{"id": "field-tcp", "type": "tcp", "host": "127.0.0.1", "port": $MB_PORT,
             "response_timeout_ms": 500}],
  "mqtt_sources": [{"id": "lora", "url": "$MQTT_URL", "client_id": "citygate-85-ingest",
                    "subscriptions": [{"topic": "application/+/device/{dev_eui}/event/up",
                                       "decoder": "chirpstack", "qos": 1}]}],
  "devices": [
    {"id": "mh-0001", "kind": "manhole", "name": "Jiefangbei cover 1", "interval_ms": 1000,
     "modbus": {"bus": "field-tcp", "unit_id": 1, "profile": "generic-manhole"},
     "component": {"code": "5001030102000001", "grid": "500103001002003", "owner": "drainage co."},
     "params": {"well_depth_m": 2.5}, "overrides": {"cover-tilt": {"on_delay": "2s"}}},
    {"id": "lamp-0001", "kind": "lamp", "name": "Minzu Road lamp 1", "interval_ms": 1000,
     "modbus": {"bus": "field-tcp", "unit_id": 11, "profile": "generic-lamp"},
     "component": {"code": "5001030118000001", "grid": "500103001003001"},
     "params": {"rated_power_w": 150}},
    {"id": "water-0001", "kind": "water", "name": "Supply pressure point 1", "interval_ms": 1000,
     "modbus": {"bus": "field-tcp", "unit_id": 21, "profile": "generic-water"},
     "component": {"code": "5001030101000101", "grid": "500103002001001"}},
    {"id": "gas-0001", "kind": "gas", "name": "Gas regulator 1", "interval_ms": 1000,
     "modbus": {"bus": "field-tcp", "unit_id": 31, "profile": "generic-gas"},
     "component": {"code": "5001030135000001", "grid": "500103002002001"}},
    {"id": "mh-0101", "kind": "manhole", "name": "LoRa cover 1", "interval_ms": 2000,
     "mqtt": {"source": "lora", "key": "24e124713b100001", "decoder": "manhole"},
     "component": {"code": "5001030103000101", "grid": "500103001002004"},
     "params": {"well_depth_m": 3.0}}
  ],
  "outputs": {"mqtt": {"enabled": true, "url": "$MQTT_URL", "client_id": "citygate-85-up",
                       "topic_prefix": "citygate"},
              "influxdb": {"enabled": false}},
  "http": {"enabled": true, "listen": "127.0.0.1", "port": $HTTP_PORT}
}
EOF
MODBUS_DEVICES=(mh-0001 lamp-0001 water-0001 gas-0001)
ALL_DEVICES=("${MODBUS_DEVICES[@]}" mh-0101)

"$CITYGATE_BIN" check -c "$CONFIG" >"$T/check.log" 2>&1 || fail "citygate check: $(cat "$T/check.log")"

start_bg sim "$SIM" -c "$CONFIG" --scenario "$SCENARIO" --speed 1
SIM_PID=$BG_PID
wait_for "grep -q 'citygate-sim: ready' '$T/sim.log' || ! pid_alive $SIM_PID" 15 ||
    fail "citygate-sim did not print 'citygate-sim: ready' within 15 s"
pid_alive "$SIM_PID" || fail "citygate-sim exited at start"

start_bg gateway "$CITYGATE_BIN" run -c "$CONFIG"
GW_PID=$BG_PID
URL=http://127.0.0.1:$HTTP_PORT
wait_for "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 $URL/healthz) == 200 ]] || ! pid_alive $GW_PID" 20 ||
    fail "gateway /healthz did not answer 200 within 20 s"
pid_alive "$GW_PID" || fail "citygate run exited at start"
info "gateway up on $URL"

# The API first: a failure here names the pipeline, not the page.
wait_for "curl -sf --max-time 2 $URL/api/alarms | grep -q '\"$ALARM\"'" 30 ||
    fail "no $ALARM in /api/alarms within 30 s: $(curl -s --max-time 2 "$URL/api/alarms" | head -c 600)"
info "$ALARM is in /api/alarms"

# ---- the browser ------------------------------------------------------------------------------
cat >"$T/drive.cjs" <<'EOF'
// Drives the dashboard; every check fails with a message naming what was missing.
const { chromium } = require(process.env.PW_MODULE);
const fs = require("fs");
const url = process.env.URL, alarm = process.env.ALARM, artifacts = process.env.ARTIFACTS;
const allDevices = process.env.ALL_DEVICES.split(" ");
const modbusDevices = process.env.MODBUS_DEVICES.split(" ");
const problems = [];

async function step(what, fn) {
  const t0 = Date.now();
  try {
    const r = await fn();
    console.log(`ok   ${what} (${Date.now() - t0} ms)`);
    return r;
  } catch (e) {
    throw new Error(`${what}: ${e.message.split("\n")[0]}`);
  }
}

(async () => {
  const ctx = await chromium.launchPersistentContext(process.env.PROFILE_DIR, {
    executablePath: process.env.CHROMIUM, headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage"],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on("pageerror", e => problems.push(`page error: ${e.message}`));
  page.on("response", r => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on("requestfailed", r => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
  page.on("dialog", d => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
  try {
    await step("page loads and renders the API", async () => {
      await page.goto(url, { waitUntil: "load", timeout: 15000 });
      await page.waitForSelector('body[data-loaded="1"]', { timeout: 15000 });
    });
    await step(`device cards for ${allDevices.join(", ")}`, async () => {
      for (const id of allDevices) await page.waitForSelector(`[data-device="${id}"]`, { timeout: 10000 });
    });
    await step(`live values and health online on ${modbusDevices.join(", ")}`, async () => {
      await page.waitForFunction(ids => ids.every(id => {
        const c = document.querySelector(`[data-device="${id}"]`);
        return c && c.classList.contains("online") && /=\s*-?\d/.test(c.querySelector(".vals").textContent);
      }), modbusDevices, { timeout: 15000 }).catch(async e => {
        const got = await page.$$eval("[data-device]", els => els.map(c => `${c.dataset.device}[${c.className}]`));
        throw new Error(`${e.message.split("\n")[0]}; cards: ${got.join(" ")}`);
      });
    });
    const row = `#alarms tr[data-alarm="${alarm}"]`;
    await step(`alarm row ${alarm} active_unacked`, async () => {
      await page.waitForSelector(row, { timeout: 20000 });
      await page.waitForFunction(sel => /active_unacked/.test(document.querySelector(sel).textContent), row, { timeout: 10000 });
    });
    await step("history chart drawn by Dygraphs", async () => {
      if (!await page.evaluate(() => typeof Dygraph === "function")) throw new Error("Dygraph not loaded");
      await page.selectOption("#chart-device", "mh-0001");
      await page.dispatchEvent("#chart-device", "change");
      await page.selectOption("#chart-field", "tilt_deg");
      await page.dispatchEvent("#chart-field", "change");
      await page.waitForSelector("#chart canvas", { timeout: 10000 });
      await page.waitForFunction(() => /tilt_deg .* [1-9]\d* points/.test(document.getElementById("chart-note").textContent), null, { timeout: 10000 });
    });
    await page.screenshot({ path: `${artifacts}/dashboard.png`, fullPage: true });
    console.log(`ok   screenshot ${artifacts}/dashboard.png`);
    await step(`Acknowledge ${alarm}`, async () => {
      await page.click(`button.ack[data-alarm="${alarm}"]`, { timeout: 5000 });
      await page.waitForFunction(sel => {
        const r = document.querySelector(sel);
        return r && /active_acked/.test(r.textContent) && !r.querySelector("button.ack");
      }, row, { timeout: 10000 });
    });
    await page.screenshot({ path: `${artifacts}/dashboard-acked.png`, fullPage: true });
    if (problems.length) throw new Error(`the page had problems:\n  ${problems.join("\n  ")}`);
  } catch (e) {
    await page.screenshot({ path: `${artifacts}/dashboard-failure.png`, fullPage: true }).catch(() => {});
    console.error(`FAIL: ${e.message}`);
    if (problems.length) console.error(`  also: ${problems.join("; ")}`);
    await ctx.close();
    process.exit(1);
  }
  await ctx.close();
})().catch(e => { console.error(`FAIL: browser: ${e.message}`); process.exit(1); });
EOF
mkdir -p "$T/home" "$T/chromium-profile"
set +e
HOME=$T/home XDG_CONFIG_HOME=$T/home/.config XDG_CACHE_HOME=$T/home/.cache \
    PW_MODULE=$PW_MODULE CHROMIUM=$CHROMIUM URL=$URL/ ALARM=$ALARM ARTIFACTS=$ARTIFACTS \
    PROFILE_DIR=$T/chromium-profile ALL_DEVICES="${ALL_DEVICES[*]}" \
    MODBUS_DEVICES="${MODBUS_DEVICES[*]}" \
    timeout 120 node "$T/drive.cjs" 2>&1 | tee "$T/browser.log" >&2
rc=${PIPESTATUS[0]}
set -e
[[ $rc == 0 ]] || fail "browser checks failed (exit $rc; screenshot $ARTIFACTS/dashboard-failure.png)"
[[ -s $ARTIFACTS/dashboard.png ]] || fail "no screenshot at $ARTIFACTS/dashboard.png"

# ---- the acknowledgement went through the gateway's command path ------------------------------
alarms=$(curl -sf --max-time 2 "$URL/api/alarms") || fail "/api/alarms failed after the ack"
state=$(printf '%s' "$alarms" | node -e '
  let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
    const a = JSON.parse(s).find(x => (x.alarm && x.alarm.id) === process.argv[1]);
    console.log(a ? a.alarm.state : "missing");
  });' "$ALARM")
[[ $state == active_acked ]] || fail "/api/alarms says $ALARM is $state after the click, want active_acked"
curl -sf --max-time 2 "$URL/api/events?limit=50" | grep -q '"type":"acked"' ||
    fail "no acked event in /api/events"
pid_alive "$GW_PID" || fail "gateway died during the test"
echo "PASS: dashboard in Chromium (screenshot $ARTIFACTS/dashboard.png)"
