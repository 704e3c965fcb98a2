#!/usr/bin/env python3
"""A scripted InfluxDB front for tests/integration/41-influx-http-faults.sh.

Every POST is answered from a plan first ("500*2,429:2,401*3": two 500s, one 429 with
Retry-After: 2, three 401s), then forwarded to the real server (--upstream) with its
answer relayed. A body with more than --max-lines lines is always answered 413 (and
never forwarded). Each request is logged as one JSON line in --log:
{"t": seconds, "lines": n, "status": code, "forwarded": bool}. Loopback only."""
import argparse, gzip, json, threading, time, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--upstream", required=True)
ap.add_argument("--plan", default="")
ap.add_argument("--max-lines", type=int, default=0)
ap.add_argument("--log", required=True)
args = ap.parse_args()

plan = []
for step in filter(None, args.plan.split(",")):
    code, _, n = step.partition("*")
    code, _, retry_after = code.partition(":")
    plan += [(int(code), retry_after)] * int(n or 1)
lock = threading.Lock()
logf = open(args.log, "a", buffering=1)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        lines = body.count(b"\n")
        with lock:
            if args.max_lines and lines > args.max_lines:
                step = (413, "")
            elif plan:
                step = plan.pop(0)
            else:
                step = None
        forwarded = False
        if step is not None:
            code, retry_after = step
            hdrs = [("Retry-After", retry_after)] if retry_after else []
            err = json.dumps({"error": f"scripted {code}"}).encode()
            self.reply(code, err, hdrs)
        else:
            forwarded = True
            req = urllib.request.Request(args.upstream + self.path, data=raw, method="POST")
            for k in ("Content-Type", "Content-Encoding", "Authorization"):
                if self.headers.get(k):
                    req.add_header(k, self.headers[k])
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    code, out = r.status, r.read()
            except urllib.error.HTTPError as e:
                code, out = e.code, e.read()
            self.reply(code, out, [("Content-Type", "application/json")])
        logf.write(json.dumps({"t": time.time(), "lines": lines, "status": code,
                               "forwarded": forwarded}) + "\n")


ThreadingHTTPServer(("127.0.0.1", args.port), H).serve_forever()
