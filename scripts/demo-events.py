#!/usr/bin/python3
"""Print citygate alarm events one line each.

Reads `mosquitto_sub -F %j` output (one JSON object per message) on stdin, e.g.

    mosquitto_sub -h 127.0.0.1 -p PORT -t 'citygate/+/event/#' -F %j | demo-events.py

and writes lines such as

    08:30:05  raised    major     mh-0123/cover-tilt   tilt_deg=23.4 deg   0102 cover displaced   comp 5001030102000123 grid 500103001002003   #1042
"""
import json
import sys


def fmt_value(ev):
    e = ev.get("evidence") or {}
    if "field" not in e:
        return ""
    v = e.get("value")
    if e.get("field") is None or v is None:
        # Comm loss and staleness carry no value: say what the quality was.
        return "no data (%s)" % (e.get("quality") or "none")
    unit = e.get("unit") or ""
    if isinstance(v, float):
        v = "%g" % v  # 150.8197 W, not the float32's 150.81968688964844
    return ("%s=%s %s" % (e["field"], v, unit)).strip()


def line_for(msg):
    topic = msg.get("topic", "?")
    try:
        ev = json.loads(msg.get("payload", ""))
        if not isinstance(ev, dict):
            raise ValueError("not an object")
    except ValueError:
        return "%-40s (not an event: %r)" % (topic, msg.get("payload", "")[:80])
    ts = ev.get("ts", "")
    clock = ts[11:19] if len(ts) >= 19 else ts
    alarm = ev.get("alarm") or {}
    problem = ev.get("problem") or {}
    comp = ev.get("component") or {}
    parts = [
        "%-8s" % clock,
        "%-14s" % ev.get("type", "?"),
        "%-8s" % alarm.get("severity", ""),
        "%-28s" % alarm.get("id", topic.rsplit("/", 1)[-1]),
        "%-24s" % fmt_value(ev),
        "%-28s" % ("%s %s" % (problem.get("code", ""), problem.get("name", ""))).strip(),
    ]
    if comp:
        parts.append("comp %s grid %s" % (comp.get("code", "-"), comp.get("grid", "-")))
    if "seq" in ev:
        parts.append("#%s" % ev["seq"])
    return "  ".join(parts).rstrip()


def main():
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            msg = json.loads(raw)
        except ValueError:
            print("(unreadable line from mosquitto_sub: %r)" % raw[:80], flush=True)
            continue
        print(line_for(msg), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
