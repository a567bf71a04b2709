"""An OTLP/HTTP logs receiver for the tests: parses every POST /v1/logs body with the official
OpenTelemetry protobuf definitions (opentelemetry-proto), strictly, and keeps what it got.

  python otlp_receiver.py --port 4318
  POST /v1/logs         -> 200 {} when the body is a valid ExportLogsServiceRequest, else 400
  GET  /_received       -> JSON list of the log records received (MessageToDict form)
  POST /_fail?n=N[&status=S][&until_batch=1]
                        -> answer the next N exports with S (503: a collector that is down);
                           with until_batch, go on refusing until an export of 2+ records (so
                           that recovery never falls between an exporter's probes)
  POST /_refuse?seq=N&status=S
                        -> answer S to every export holding the record with agentgate.seq N
                           (a collector that refuses what one record holds)
  POST /_refuse_empty   -> answer 400 to every export holding no record
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

received = []
fail_next = 0
fail_status = 503
fail_until_batch = False
refuse = {}
refuse_empty = False


def seqs_of(body):
    """The agentgate.seq attributes of the log records in a JSON export body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    out = []
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for a in lr.get("attributes", []):
                    if a.get("key") == "agentgate.seq":
                        out.append(int(a["value"]["intValue"]))
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_received":
            self.reply(200, json.dumps(received).encode())
        else:
            self.reply(404)

    def do_POST(self):
        global fail_next, fail_status, refuse_empty, fail_until_batch
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/_fail":
            q = parse_qs(url.query)
            fail_next = int(q.get("n", ["1"])[0])
            fail_status = int(q.get("status", ["503"])[0])
            fail_until_batch = q.get("until_batch", ["0"])[0] == "1"
            self.reply(204, b"")
            return
        if url.path == "/_refuse":
            q = parse_qs(url.query)
            refuse[int(q["seq"][0])] = int(q["status"][0])
            self.reply(204, b"")
            return
        if url.path == "/_refuse_empty":
            refuse_empty = True
            self.reply(204, b"")
            return
        if url.path != "/v1/logs":
            self.reply(404)
            return
        if refuse_empty and not seqs_of(body):
            self.reply(400)
            return
        for seq in seqs_of(body):
            if seq in refuse:
                self.reply(refuse[seq])
                return
        if fail_next > 0 or (fail_until_batch and len(seqs_of(body)) < 2):
            fail_next = max(fail_next - 1, 0)
            self.reply(fail_status)
            return
        fail_until_batch = False
        try:
            req = json_format.Parse(body, ExportLogsServiceRequest(), ignore_unknown_fields=False)
        except json_format.ParseError as e:
            self.reply(400, json.dumps({"error": str(e)}).encode())
            return
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    received.append(json_format.MessageToDict(lr))
        self.reply(200)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
