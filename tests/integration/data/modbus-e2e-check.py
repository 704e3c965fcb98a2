#!/usr/bin/python3
"""Watch a running `citygate run` through its HTTP API while citygate-sim plays a
modbus-e2e scenario, then judge what was seen (tests 26 and 27).

The scenario file says what to expect: a device with "hold" + "set" must show exactly the
set values (decoded, with the profile's unit, quality good) whenever it is not in a fault
window; a "silent" device must go offline within the poller's limit and come back; an
"exception" device must report the code (per-code counter in /metrics, last_exception in
/api/devices); every "malform" / "corrupt_crc" phase must be rejected (the counter named by
--expect KIND=COUNTER grows, no good value from that device; KIND=accepted: a deviation
the client library cannot see, the device must then still read exactly as itself) and the
device must come back once the faults stop. Devices not in a fault keep their cadence throughout.

Step times come from the simulator's log ("t=3.001s step 4: ..."), mapped to our clock by
the smallest observed lag, so bounds are measured from when a fault really started.

usage: modbus-e2e-check.py --config CFG --scenario SCN --sim-log LOG --http URL
                           --gw-pid PID --offline-after N [--expect KIND=COUNTER ...]
"""
import argparse
import json
import math
import os
import re
import sys
import time
import urllib.request

TICK_S = 0.25          # gateway.c refreshes device health every TICK_INTERVAL_MS
MARGIN_S = 0.35        # scheduling slack (sharing the connection, start slack, our polling)
POLL_S = 0.1

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--scenario", required=True)
ap.add_argument("--sim-log", required=True)
ap.add_argument("--http", required=True)
ap.add_argument("--gw-pid", type=int, required=True)
ap.add_argument("--offline-after", type=int, required=True)
ap.add_argument("--expect", action="append", default=[])
ap.add_argument("--tail", type=float, default=4.0, help="seconds to watch after the last step")
ap.add_argument("--timeout", type=float, default=50.0)
args = ap.parse_args()

cfg = json.load(open(args.config))
scn = json.load(open(args.scenario))
steps = scn["steps"] if isinstance(scn, dict) else scn
expect = dict(e.split("=", 1) for e in args.expect)
errors = []


def err(msg):
    errors.append(msg)
    print("check: " + msg, file=sys.stderr)


def at_s(v):
    if isinstance(v, (int, float)):
        return float(v)
    m = re.fullmatch(r"([\d.]+)(ms|s|m|h)", v)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ---- what the config says ------------------------------------------------------------
buses = {b["id"]: b for b in cfg["buses"]}
cfg_dir = os.path.dirname(os.path.abspath(args.config))
pdirs = cfg["paths"]["profiles"]
pdirs = [pdirs] if isinstance(pdirs, str) else pdirs
devs = {}
for d in cfg["devices"]:
    prof = None
    for pd in pdirs:
        f = os.path.join(cfg_dir, pd, d["modbus"]["profile"] + ".json")
        if os.path.exists(f):
            prof = json.load(open(f))
            break
    b = buses[d["modbus"]["bus"]]
    devs[d["id"]] = {
        "interval": d.get("interval_ms", 10000) / 1000,
        "rt": b.get("response_timeout_ms", 500) / 1000,
        "attempts": 1 + b.get("retries", 1),
        "reconnect_max": b.get("reconnect_max_ms", 30000) / 1000,
        "units": {p["field"]: p.get("unit", "") for p in prof["points"]},
        "n_points": len(prof["points"]),
    }

# ---- what the scenario says ----------------------------------------------------------
held = {}        # device -> {field: value}
silent = {}      # device -> [(on_step, off_step)]
exc = {}         # device -> (code, table, address)
faults = {}      # device -> [(step, kind)] in time order; kind "none" ends
for i, s in enumerate(steps):
    ids = s.get("device")
    ids = [ids] if isinstance(ids, str) else (ids or [])
    for dv in ids:
        if s.get("hold") is True and "set" in s:
            held.setdefault(dv, {}).update(s["set"])
        if s.get("silent") is True:
            silent.setdefault(dv, []).append([i, None])
        if s.get("silent") is False:
            silent[dv][-1][1] = i
        if isinstance(s.get("exception"), dict):
            e = s["exception"]
            exc[dv] = (e["code"], e.get("table"), e.get("address"))
        kinds = []
        if s.get("corrupt_crc") is True:
            kinds.append("crc")
        if "malform" in s:
            kinds.append(s["malform"] if s["malform"] not in (False, "none") else "none")
        elif s.get("corrupt_crc") is False:
            kinds.append("none")
        for k in kinds[-1:]:
            faults.setdefault(dv, []).append((i, k))
last_step_at = max(at_s(s["at"]) for s in steps)


# ---- watch ---------------------------------------------------------------------------
def get(path):
    with urllib.request.urlopen(args.http + path, timeout=2) as r:
        return r.read().decode()


def parse_metrics(text):
    m = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
    return m


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


step_obs = {}  # step index -> (scenario seconds, our time when first seen)
snaps = []     # (t, {id: device json}, metrics)
log_pos = 0
t_start = time.monotonic()
t_end = None
while True:
    now = time.monotonic()
    if not alive(args.gw_pid):
        err("citygate exited while the scenario ran")
        break
    with open(args.sim_log) as f:
        f.seek(log_pos)
        chunk = f.read()
    nl = chunk.rfind("\n")
    if nl >= 0:
        log_pos += len(chunk[:nl + 1].encode())
        for m in re.finditer(r"t=([\d.]+)s step (\d+):", chunk[:nl + 1]):
            step_obs.setdefault(int(m.group(2)), (float(m.group(1)), now))
    try:
        dj = json.loads(get("/api/devices"))
        mj = parse_metrics(get("/metrics"))
        snaps.append((time.monotonic(), {d["id"]: d for d in dj}, mj))
    except Exception as e:  # noqa: BLE001 - an HTTP failure is a finding, not a crash
        err(f"HTTP failed at {now - t_start:.1f} s: {e}")
    if t_end is None and len(step_obs) == len(steps):
        t_end = now + args.tail
    if t_end is not None and now >= t_end:
        break
    if now - t_start > args.timeout:
        err(f"scenario did not finish within {args.timeout} s (steps seen: {sorted(step_obs)})")
        break
    time.sleep(POLL_S)

if len(step_obs) < len(steps) or len(snaps) < 10:
    err("not enough observed to judge")
    sys.exit(1)
offset = min(obs - ts for ts, obs in step_obs.values())
step_t = {i: offset + ts for i, (ts, _) in step_obs.items()}


def snaps_between(t0, t1):
    return [s for s in snaps if t0 <= s[0] <= t1]


def metric(m, name):
    return m.get(name, 0.0)


def first_where(t0, pred):
    for s in snaps:
        if s[0] >= t0 and pred(s):
            return s[0]
    return None


# Warm-up: every device has had its first cycle (first polls are spread over one interval).
t_warm = first_where(0, lambda s: all(s[1][d]["samples"] > 0 for d in devs))
if t_warm is None:
    err("some device never produced a sample")
    sys.exit(1)
t_warm += 0.3
if t_warm - snaps[0][0] > 3.0:
    err(f"first samples of every device took {t_warm - snaps[0][0]:.1f} s")


def close(a, b):
    return isinstance(a, (int, float)) and not isinstance(a, bool) and \
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# Fault windows per device: [start, back online]. Outside them a held field must be good.
windows = {d: [] for d in devs}


def back_online(dev, t0):
    return first_where(t0, lambda s: s[1][dev]["health"] == "online")


report = []

# ---- silence: offline within the limit, back within the limit ------------------------
for dv, spans in silent.items():
    p = devs[dv]
    for on, off in spans:
        t_on = step_t[on]
        t_off = first_where(t_on, lambda s: s[1][dv]["health"] == "offline")
        bound = args.offline_after * p["interval"] + p["attempts"] * p["rt"] + TICK_S + MARGIN_S
        low = (args.offline_after - 1) * p["interval"] - 0.3
        if t_off is None or (off is not None and t_off > step_t[off]):
            err(f"{dv}: silent at {t_on - offset:.1f} s, never offline while silent")
            continue
        dt = t_off - t_on
        report.append(f"{dv}: silent -> offline after {dt:.2f} s (limit {bound:.2f} s = "
                      f"{args.offline_after} x {p['interval']:g} s + {p['attempts']} x {p['rt']:g} s "
                      f"+ tick {TICK_S} s + {MARGIN_S} s)")
        if dt > bound:
            err(f"{dv}: offline {dt:.2f} s after it went silent, limit {bound:.2f} s")
        if dt < low:
            err(f"{dv}: offline {dt:.2f} s after it went silent: sooner than "
                f"{args.offline_after} missed cycles ({low:.2f} s)")
        for s in snaps_between(t_off, step_t[off] if off is not None else snaps[-1][0]):
            if s[1][dv]["health"] not in ("offline", "probing"):
                err(f"{dv}: {s[1][dv]['health']} while silent and offline at {s[0] - offset:.1f} s")
                break
        t_back = None
        if off is not None:
            t_back = back_online(dv, step_t[off])
            bound2 = 1.2 * p["reconnect_max"] + p["interval"] + p["rt"] + TICK_S + MARGIN_S
            if t_back is None:
                err(f"{dv}: not online again after it answers again")
            else:
                report.append(f"{dv}: answers again -> online after {t_back - step_t[off]:.2f} s "
                              f"(limit {bound2:.2f} s = probe backoff <= 1.2 x {p['reconnect_max']:g} s "
                              f"+ interval + timeout + tick + margin)")
                if t_back - step_t[off] > bound2:
                    err(f"{dv}: back online {t_back - step_t[off]:.2f} s after it answers, limit {bound2:.2f} s")
        windows[dv].append((t_on, (t_back or snaps[-1][0]) + 0.3))

# ---- malformed answers / bad CRC: rejected, counted, then recovered ------------------
for dv, phases in faults.items():
    p = devs[dv]
    t_first = None
    for k, (i, kind) in enumerate(phases):
        t0 = step_t[i]
        t1 = step_t[phases[k + 1][0]] if k + 1 < len(phases) else snaps[-1][0]
        if kind == "none":
            t_back = back_online(dv, t0)
            bound2 = 1.2 * p["reconnect_max"] + p["interval"] + p["rt"] + TICK_S + MARGIN_S
            if t_back is None or t_back - t0 > bound2:
                err(f"{dv}: not online within {bound2:.2f} s after its answers are sound again")
            else:
                report.append(f"{dv}: sound answers -> online after {t_back - t0:.2f} s")
            windows[dv].append((t_first, (t_back or snaps[-1][0]) + 0.3))
            t_first = None
            continue
        if t_first is None:
            t_first = t0
        want = expect.get(kind)
        if want is None:
            err(f"{dv}: no --expect for fault kind {kind}")
            continue
        ss = snaps_between(t0 + 0.05, t1)
        settle = t0 + p["interval"] + p["attempts"] * p["rt"] + TICK_S + 0.2
        if want == "accepted":
            # (it may start offline after the previous phase: judge from when it is back)
            t_ok = back_online(dv, t0)
            bound2 = 1.2 * p["reconnect_max"] + p["interval"] + p["rt"] + TICK_S + MARGIN_S
            if t_ok is None or t_ok > t1 or t_ok - t0 > bound2:
                err(f"{dv}: {kind}: not online within {bound2:.2f} s of the phase")
                continue
            settle = t_ok + 0.3
            # A deviation the client library does not detect (e.g. libmodbus 3.1.6 on TCP
            # checks neither the unit id nor the MBAP length): the device must still read
            # as itself, exactly, with nothing lost on the shared connection.
            bad = [(s[0] - offset, f, v["value"], v["quality"]) for s in snaps_between(settle, t1)
                   for f, v in s[1][dv]["values"].items()
                   if f in held.get(dv, {}) and (v["quality"] != "good" or not (
                       v["value"] is held[dv][f] if isinstance(held[dv][f], bool) else close(v["value"], held[dv][f])))]
            report.append(f"{dv}: {kind}: not detected by the client library; values "
                          f"{'exact' if not bad else 'WRONG'}, health {ss[-1][1][dv]['health']}")
            if bad:
                err(f"{dv}: {kind} answers gave wrong or bad values: {bad[:3]}")
            continue
        key = f'citygate_modbus_errors_total{{kind="{want}"}}'
        delta = metric(ss[-1][2], key) - metric(ss[0][2], key)
        # Reject: after one full cycle into the phase, no field of the device is good.
        good = [(s[0] - offset, f) for s in snaps_between(settle, t1)
                for f, v in s[1][dv]["values"].items() if v["quality"] == "good"]
        report.append(f"{dv}: {kind}: {want} +{delta:.0f} in {t1 - t0:.1f} s, health "
                      f"{ss[-1][1][dv]['health']}, last_error '{ss[-1][1][dv].get('last_error')}'")
        if delta < 1:
            err(f"{dv}: {kind} answers for {t1 - t0:.1f} s did not count a {want}")
        if good:
            err(f"{dv}: {kind} answers taken as good values: {good[:3]}")

# ---- exceptions: reported with their code --------------------------------------------
for dv, (code, table, addr) in exc.items():
    key = f'citygate_modbus_exceptions_total{{code="{code}"}}'
    ss = snaps_between(t_warm + 1.0, snaps[-1][0])
    rate = (metric(ss[-1][2], key) - metric(ss[0][2], key)) / (ss[-1][0] - ss[0][0])
    report.append(f"{dv}: exception {code}: {key} at {rate:.2f}/s, last_exception "
                  f"{ss[-1][1][dv].get('last_exception')}, health {ss[-1][1][dv]['health']}, "
                  f"last_error '{ss[-1][1][dv].get('last_error')}'")
    if rate < 0.7 / devs[dv]["interval"]:
        err(f"{dv}: {key} grew {rate:.2f}/s, want about one per cycle")
    prof_pts = {}
    for pd in pdirs:
        f = os.path.join(cfg_dir, pd, next(x for x in cfg["devices"] if x["id"] == dv)["modbus"]["profile"] + ".json")
        if os.path.exists(f):
            prof_pts = {q["field"]: q for q in json.load(open(f))["points"]}
            break
    hit = [f for f, q in prof_pts.items() if q["address"] == addr and (table is None or q["table"] == table)]
    for s in ss:
        d = s[1][dv]
        if d.get("last_exception") != code:
            err(f"{dv}: last_exception {d.get('last_exception')} at {s[0] - offset:.1f} s, want {code}")
            break
        if d["health"] != "degraded":
            err(f"{dv}: health {d['health']} while answering exception {code}, want degraded")
            break
        bad = [f for f in hit if d["values"][f]["quality"] == "good"]
        if bad:
            err(f"{dv}: {bad} good although the device answers exception {code} for them")
            break
        if str(code) not in d.get("last_error", ""):
            err(f"{dv}: last_error '{d.get('last_error')}' does not name exception {code}")
            break

# ---- held values: exact, with units, good outside fault windows -----------------------
for dv, fields in held.items():
    p = devs[dv]
    for s in snaps_between(t_warm, snaps[-1][0]):
        d = s[1][dv]
        in_fault = any(a is not None and a <= s[0] <= b for a, b in windows[dv])
        for f, want in fields.items():
            v = d["values"].get(f)
            if v is None:
                err(f"{dv}.{f}: missing at {s[0] - offset:.1f} s")
                continue
            if v["unit"] != p["units"][f]:
                err(f"{dv}.{f}: unit '{v['unit']}', profile says '{p['units'][f]}'")
            if v["quality"] == "good":
                ok = v["value"] is want if isinstance(want, bool) else close(v["value"], want)
                if not ok:
                    err(f"{dv}.{f} = {v['value']!r} (good) at {s[0] - offset:.1f} s, held at {want!r}")
            elif not in_fault:
                err(f"{dv}.{f}: quality {v['quality']} at {s[0] - offset:.1f} s outside any fault")
        if len(errors) > 20:
            break

# ---- cadence of the devices without faults of their own -------------------------------
steady = [d for d in devs if d not in silent and d not in faults]
t_last = snaps[-1][0]
for dv in steady:
    p = devs[dv]
    ss = snaps_between(t_warm, t_last)
    worst_age = max(s[1][dv]["age_s"] for s in ss)
    n0, n1 = ss[0][1][dv]["samples"], ss[-1][1][dv]["samples"]
    cycles = (n1 - n0) / p["n_points"]
    span = ss[-1][0] - ss[0][0]
    report.append(f"{dv}: {cycles:.0f} cycles in {span:.1f} s, oldest age_s {worst_age:.2f}")
    if worst_age >= 2 * p["interval"]:
        err(f"{dv}: age_s reached {worst_age:.2f} s (interval {p['interval']:g} s)")
    if cycles < span / p["interval"] - 1.5:
        err(f"{dv}: {cycles:.0f} cycles in {span:.1f} s at a {p['interval']:g} s interval")
    # No stall anywhere: the sample count grows in every 2-interval window.
    j = 0
    for i, s in enumerate(ss):
        while ss[j][0] < s[0] - 2 * p["interval"]:
            j += 1
        if s[0] - ss[0][0] >= 2 * p["interval"] and s[1][dv]["samples"] <= ss[j][1][dv]["samples"]:
            err(f"{dv}: no samples for {2 * p['interval']:g} s before {s[0] - offset:.1f} s")
            break

m = snaps[-1][2]
report.append("totals: " + ", ".join(f"{k.split('{')[1][:-1]} {v:.0f}" for k, v in m.items()
                                     if k.startswith("citygate_modbus_errors_total")))
print("\n".join(report))
sys.exit(1 if errors else 0)
