"""An agent driven by the official Python `mcp` client (2.x), for tests/mcp.rs.

Usage: mcp_agent.py SCENARIO URL TOKEN MODE [ARG]
  SCENARIO  work: list tools, claim (waiting), progress, complete, message ARG, a refused call
            wait: one claim with wait_s=ARG, printed as it came back
            inbox: read the inbox twice (the second read starts after the first's ack)
            stdio: like work, but URL is the swarmbridge binary and TOKEN its --token;
                   the bridge is launched with `mcp --url ARG --token TOKEN`
  MODE      "legacy" (initialize handshake) or "2026-07-28" (stateless, no handshake)
Prints one JSON object on stdout; exits 3 when the package is missing.
"""

import asyncio
import json
import sys

try:
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
except ImportError as e:  # the Rust test turns this into a clear skip
    print(f"python package missing: {e}", file=sys.stderr)
    sys.exit(3)


def body(result):
    """The structured content of a tool result, with its error flag."""
    return {"is_error": bool(result.is_error), "body": result.structured_content,
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"]}


async def work(client, peer):
    out = {}
    tools = await client.list_tools()
    out["tools"] = sorted(t.name for t in tools.tools)
    out["claim_schema"] = next(t.input_schema for t in tools.tools if t.name == "task_claim")
    claimed = body(await client.call_tool("task_claim", {"wait_s": 5}))
    out["claim"] = claimed
    task = (claimed["body"] or {}).get("task") or {}
    task_id = task.get("id")
    out["progress"] = body(await client.call_tool(
        "task_progress", {"task_id": task_id, "note": "halfway", "percent": 50}))
    out["done"] = body(await client.call_tool(
        "task_done", {"task_id": task_id, "result": "all green"}))
    out["msg"] = body(await client.call_tool("msg", {"to": peer, "text": "hello from mcp"}))
    out["refused_schema"] = body(await client.call_tool("task_show", {"task_id": "seven"}))
    out["refused_role"] = body(await client.call_tool("task_done", {"task_id": 999999}))
    try:
        await client.call_tool("no_such_tool", {})
        out["unknown_tool"] = "accepted"
    except Exception as e:  # the SDK raises McpError for a JSON-RPC error
        out["unknown_tool"] = str(e)
    out["status"] = body(await client.call_tool("status", {}))
    return out


async def main():
    scenario, url, token, mode = sys.argv[1:5]
    arg = sys.argv[5] if len(sys.argv) > 5 else ""
    if scenario == "stdio":
        server = StdioServerParameters(command=url, args=["mcp", "--url", arg, "--token", token])
        async with Client(server, mode=mode) as client:
            out = await work(client, "peer")
    else:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(30, read=60))
        async with http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                if scenario == "wait":
                    out = body(await client.call_tool("task_claim", {"wait_s": int(arg)}))
                elif scenario == "inbox":
                    out = {"first": body(await client.call_tool("inbox", {})),
                           "second": body(await client.call_tool("inbox", {"limit": 5}))}
                else:
                    out = await work(client, arg)
    print(json.dumps(out))


asyncio.run(main())
