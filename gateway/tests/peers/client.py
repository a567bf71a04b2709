"""Exercise an MCP server with the mcp==2.3.0 Python client and print normalised JSON.

  python client.py --url http://127.0.0.1:8001/mcp                       # Streamable HTTP, mode auto
  python client.py --url http://127.0.0.1:8001/mcp --mode legacy         # force initialize handshake (2025-11-25)
  python client.py --url http://127.0.0.1:8002/sse --transport sse       # legacy HTTP+SSE
  python client.py --url http://127.0.0.1:3001/mcp --profile everything  # server-everything
  python client.py --url https://127.0.0.1:8443/mcp --cafile ca.pem      # HTTPS with custom CA
  python client.py --url https://... --cafile ca.pem --cert agent.pem --key agent.key   # mTLS
"""
import argparse
import asyncio
import json
import re
import ssl
import sys

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

PROFILES = {
    # tool names/args, progress tool, resource to read, prompt to get
    "self": dict(echo=("echo", {"message": "hello"}), add=("add", {"a": 2, "b": 3}),
                 progress=("long_running", {"steps": 5, "delay": 0.1}),
                 resource="greeting://world", prompt=("greet", {"name": "Ada"}),
                 # x-mcp-header arguments: a 2026-07-28 client mirrors them into Mcp-Param-*
                 routed=("route_query", {"region": "Zürich", "query": "count", "shard": 3})),
    "everything": dict(echo=("echo", {"message": "hello"}), add=("get-sum", {"a": 2, "b": 3}),
                       progress=("trigger-long-running-operation", {"duration": 1, "steps": 5}),
                       resource="demo://resource/static/document/architecture.md",
                       prompt=("args-prompt", {"city": "Paris", "state": "TX"})),
}

# Things that legitimately differ run-to-run; strip before comparing direct vs proxied runs.
_VOLATILE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<TS>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<UUID>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<HEX32>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?"), "<TIME>"),  # server-everything toLocaleTimeString()
]


def normalise(obj):
    if isinstance(obj, dict):
        return {k: normalise(v) for k, v in obj.items() if k not in ("_meta",)}
    if isinstance(obj, list):
        return [normalise(v) for v in obj]
    if isinstance(obj, str):
        for rx, rep in _VOLATILE:
            obj = rx.sub(rep, obj)
    return obj


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def make_transport(args):
    verify = ssl.create_default_context(cafile=args.cafile) if args.cafile else True
    if args.cert:
        if verify is True:
            verify = ssl.create_default_context()
        verify.load_cert_chain(args.cert, args.key)
    bearer = {"Authorization": f"Bearer {args.bearer}"} if args.bearer else {}
    if args.transport == "sse":
        def factory(headers=None, timeout=None, auth=None):
            # same signature as mcp.shared._httpx_utils.create_mcp_http_client
            return httpx2.AsyncClient(headers={**(headers or {}), **bearer}, timeout=timeout, auth=auth, verify=verify)
        return sse_client(args.url, httpx_client_factory=factory)
    http = httpx2.AsyncClient(verify=verify, headers=bearer, timeout=httpx2.Timeout(30, read=300))
    return streamable_http_client(args.url, http_client=http, terminate_on_close=True)


async def run(args):
    p = PROFILES[args.profile]
    out = {}
    progress = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "total": total, "message": message})

    # cache=None: otherwise list_* results may be served from the client-side cache (SEP-2549)
    async with Client(make_transport(args), mode=args.mode, cache=None, read_timeout_seconds=60) as c:
        out["protocol_version"] = c.protocol_version
        out["server_info"] = dump(c.server_info) if c.server_info else None
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["echo"] = dump(await c.call_tool(*p["echo"]))
        out["add"] = dump(await c.call_tool(*p["add"]))
        if "routed" in p:
            out["routed"] = dump(await c.call_tool(*p["routed"]))
        out["progress_result"] = dump(await c.call_tool(*p["progress"], progress_callback=on_progress))
        out["progress_notifications"] = progress
        out["resources"] = sorted(r.uri for r in (await c.list_resources()).resources)
        out["resource_templates"] = sorted(t.uri_template for t in (await c.list_resource_templates()).resource_templates)
        out["read_resource"] = dump(await c.read_resource(p["resource"]))
        out["prompts"] = sorted(x.name for x in (await c.list_prompts()).prompts)
        out["prompt"] = dump(await c.get_prompt(*p["prompt"]))
    # leaving the context sends DELETE <url> with Mcp-Session-Id (legacy-mode streamable HTTP only)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    ap.add_argument("--mode", default="auto", help="auto | legacy | 2026-07-28")
    ap.add_argument("--profile", choices=list(PROFILES), default="self")
    ap.add_argument("--cafile")
    ap.add_argument("--cert", help="client certificate (PEM) for mTLS")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--bearer", help="send Authorization: Bearer <token> on every request")
    ap.add_argument("--raw", action="store_true", help="do not normalise")
    args = ap.parse_args()
    out = asyncio.run(run(args))
    print(json.dumps(out if args.raw else normalise(out), indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
