"""OAuth discovery as the Python MCP SDK's client does it, against one server URL: POST
initialize without a token, read resource_metadata from the 401's WWW-Authenticate, try the
SDK's ordered discovery URLs (that one first, then the path-inserted and root well-known URIs;
and again as a client that ignores the header), validate what is found with the SDK's
ProtectedResourceMetadata, and check the resource against the server URL as the SDK does.
Prints one JSON object.

  python discover.py http://127.0.0.1:PORT/servers/NAME/mcp
"""
import asyncio
import json
import sys

import httpx2 as httpx
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    handle_protected_resource_response,
)
from mcp.shared.auth_utils import check_resource_allowed

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "discover", "version": "1"},
    },
}


async def discover(client: httpx.AsyncClient, hint: str | None, server_url: str) -> dict:
    tried = []
    for url in build_protected_resource_metadata_discovery_urls(hint, server_url):
        response = await client.get(url)
        tried.append([url, response.status_code])
        metadata = await handle_protected_resource_response(response)
        if metadata is not None:
            resource = str(metadata.resource)
            return {
                "url": url,
                "tried": tried,
                "resource": resource,
                "authorization_servers": [str(s) for s in metadata.authorization_servers],
                "bearer_methods_supported": metadata.bearer_methods_supported,
                "allowed": check_resource_allowed(server_url, resource),
            }
    return {"tried": tried}


async def main(server_url: str) -> None:
    # httpx waits 5 s by default: too short for a loaded 2-core CI machine.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            server_url,
            json=INITIALIZE,
            headers={"Accept": "application/json, text/event-stream"},
        )
        hint = extract_resource_metadata_from_www_auth(response)
        out = {
            "status": response.status_code,
            "www_authenticate": response.headers.get("www-authenticate"),
            "hint": hint,
            "with_hint": await discover(client, hint, server_url),
            "without_hint": await discover(client, None, server_url),
        }
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
