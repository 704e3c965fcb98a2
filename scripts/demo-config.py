#!/usr/bin/python3
"""Make a runnable copy of a citygate config for a private demo or test run.

    demo-config.py --list-rtu SRC.json
        print the ids of the RTU buses, one a line

    demo-config.py SRC.json OUT.json --data-dir DIR --mqtt-url URL --influx-url URL
                   --http-port PORT [--rtu BUS=DEVICE ...] [--plugins DIR]
                   [--log-level LEVEL]
        write OUT.json: every Modbus TCP bus on 127.0.0.1 and a free port (printed as
        "tcp BUS PORT" lines), every RTU bus on the given device, every MQTT connection
        on the given broker, InfluxDB on the given URL, the page on 127.0.0.1:PORT, the
        data dir given, relative paths made absolute against SRC's directory.
"""
import argparse
import json
import os
import socket
import sys


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def absolute(paths, base):
    if paths is None:
        return None
    items = paths if isinstance(paths, list) else [paths]
    return [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in items]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--list-rtu", action="store_true")
    ap.add_argument("--data-dir")
    ap.add_argument("--mqtt-url")
    ap.add_argument("--influx-url")
    ap.add_argument("--http-port", type=int)
    ap.add_argument("--rtu", action="append", default=[], metavar="BUS=DEVICE")
    ap.add_argument("--plugins")
    ap.add_argument("--log-level")
    a = ap.parse_args()

    with open(a.src, encoding="utf-8") as f:
        cfg = json.load(f)
    buses = cfg.get("buses", [])
    if a.list_rtu:
        for b in buses:
            if b.get("type") == "rtu":
                print(b["id"])
        return 0
    if not a.out:
        ap.error("OUT.json is required")

    base = os.path.dirname(os.path.abspath(a.src))
    gw = cfg.setdefault("gateway", {})
    if a.data_dir:
        gw["data_dir"] = a.data_dir
    if a.log_level:
        gw["log_level"] = a.log_level

    paths = cfg.setdefault("paths", {})
    for key in ("profiles", "rules", "plugins"):
        if key in paths:
            paths[key] = absolute(paths[key], base)
    if a.plugins:
        paths["plugins"] = [a.plugins] + (paths.get("plugins") or [])

    rtu = dict(r.split("=", 1) for r in a.rtu)
    for b in buses:
        if b.get("type") == "tcp":
            b["host"] = "127.0.0.1"
            b["port"] = free_port()
            print("tcp %s %d" % (b["id"], b["port"]))
        elif b.get("type") == "rtu":
            if b["id"] not in rtu:
                print("demo-config: no --rtu for bus %s" % b["id"], file=sys.stderr)
                return 2
            b["device"] = rtu[b["id"]]

    if a.mqtt_url:
        for s in cfg.get("mqtt_sources", []):
            s["url"] = a.mqtt_url
    outputs = cfg.setdefault("outputs", {})
    if a.mqtt_url and "mqtt" in outputs:
        outputs["mqtt"]["url"] = a.mqtt_url
    if a.influx_url and "influxdb" in outputs:
        outputs["influxdb"]["url"] = a.influx_url
    if a.http_port:
        http = cfg.setdefault("http", {})
        http["listen"] = "127.0.0.1"
        http["port"] = a.http_port

    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
