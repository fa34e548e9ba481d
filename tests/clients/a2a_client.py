"""An orchestrator driven by the official Python `a2a-sdk` client (1.x), for tests/it/a2a.rs.

Usage: a2a_client.py SCENARIO BASE_URL TOKEN [ARG]
  SCENARIO  card:    resolve the agent card and print it as the SDK parsed it
            stream:  send message ARG with SendStreamingMessage and print every
                     stream response as one line as it arrives, then {"end": true}
            cancel:  send message ARG with returnImmediately and print the answer as
                     one line; on a line "go" on stdin cancel the task, GetTask, and
                     cancel again; print the three answers
            version: call GetTask with `A2A-Version: ARG`; print the error
            noauth:  call GetTask without a token; print the error
  BASE_URL  the server's base URL; the card is read from /.well-known/agent-card.json
Prints JSON on stdout (one object, or one per line as said); exits 3 when the
package is missing.
"""

import asyncio
import json
import sys

try:
    import httpx
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
    from a2a.types.a2a_pb2 import (CancelTaskRequest, GetTaskRequest, Message, Part, Role,
                                   SendMessageConfiguration, SendMessageRequest)
    from google.protobuf.json_format import MessageToDict
except ImportError as e:  # the Rust test turns this into a clear skip
    print(f"python package missing: {e}", file=sys.stderr)
    sys.exit(3)


def as_dict(msg):
    return MessageToDict(msg)


def message(text, skill=None):
    m = Message(message_id="m-" + text[:8].replace(" ", "-"), role=Role.ROLE_USER,
                parts=[Part(text=text)], context_id="ctx-tests")
    if skill:
        m.metadata.update({"skill": skill})
    return m


async def client_for(base, headers, streaming=True):
    http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=60))
    factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
    return http, await factory.create_from_url(base)


def error_of(e):
    return {"type": type(e).__name__, "message": str(e),
            "data": getattr(e, "data", None)}


async def main():
    scenario, base, token = sys.argv[1:4]
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    auth = {"Authorization": f"Bearer {token}"}
    out = {}
    if scenario == "card":
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, base).get_agent_card()
            out = as_dict(card)
    elif scenario == "stream":
        http, client = await client_for(base, auth)
        try:
            async for resp in client.send_message(SendMessageRequest(message=message(arg))):
                print(json.dumps(as_dict(resp)), flush=True)
            out = {"end": True}
        finally:
            await http.aclose()
    elif scenario == "cancel":
        http, client = await client_for(base, auth, streaming=False)
        try:
            req = SendMessageRequest(message=message(arg),
                                     configuration=SendMessageConfiguration(return_immediately=True))
            sent = [as_dict(r) async for r in client.send_message(req)]
            print(json.dumps(sent[0]), flush=True)
            task_id = sent[0]["task"]["id"]
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
            got = await client.get_task(GetTaskRequest(id=task_id))
            try:
                await client.cancel_task(CancelTaskRequest(id=task_id))
                again = {"type": "accepted"}
            except Exception as e:  # noqa: BLE001 - the SDK's mapped error is the point
                again = error_of(e)
            out = {"cancelled": as_dict(cancelled), "got": as_dict(got),
                   "cancel_again": again}
        finally:
            await http.aclose()
    elif scenario in ("version", "noauth"):
        headers = dict(auth) if scenario == "version" else {}
        if scenario == "version":
            headers["A2A-Version"] = arg
        http, client = await client_for(base, headers)
        try:
            await client.get_task(GetTaskRequest(id="1"))
            out = {"type": "accepted"}
        except Exception as e:  # noqa: BLE001
            out = error_of(e)
        finally:
            await http.aclose()
    print(json.dumps(out))


asyncio.run(main())
