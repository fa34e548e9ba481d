#!/usr/bin/env python3
"""A small swarmbridge agent: claims tasks, reports progress, completes them.

    pip install websockets
    python3 examples/agent.py --token sbt_... --capability rust

The protocol is described in docs/protocol.md.
"""
import argparse, asyncio, json, os, random
import websockets


class Agent:
    def __init__(self, args):
        self.args = args
        self.acked = None  # the last event seq we processed, kept in --state
        if os.path.exists(args.state):
            with open(args.state) as f:
                self.acked = json.load(f)["acked"]
        self.busy = False  # a claim is in flight or a task is being worked on
        self.jobs = set()  # running work, referenced so it is not garbage-collected

    def spawn_work(self, ws, task):
        job = asyncio.create_task(self.work(ws, task))
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def send(self, ws, frame):
        await ws.send(json.dumps(frame))

    async def claim(self, ws):
        if not self.busy:
            self.busy = True
            await self.send(ws, {"type": "task.claim", "id": "claim"})

    async def work(self, ws, task):
        print(f"working on task {task['id']}: {task['title']}")
        try:
            await asyncio.sleep(1)
            await self.send(ws, {"type": "task.progress", "id": "progress",
                                 "task_id": task["id"], "note": "halfway", "percent": 50})
            await asyncio.sleep(1)
            await self.send(ws, {"type": "task.complete", "id": "complete", "task_id": task["id"],
                                 "result": {"summary": f"done: {task['title']}"}})
            self.busy = False
            await self.claim(ws)  # more work may be waiting
        except websockets.ConnectionClosed:
            pass  # the lease runs out and the task is offered again

    async def heartbeat(self, ws, every):
        while True:
            await asyncio.sleep(every)
            await self.send(ws, {"type": "ping"})

    async def session(self, ws):
        hello = {"type": "hello", "id": "hello", "token": self.args.token}
        if self.args.capability:
            hello["capabilities"] = self.args.capability
        if self.acked is not None:
            hello["resume_from"] = self.acked
        await self.send(ws, hello)
        welcome = json.loads(await ws.recv())
        if welcome["type"] == "error":
            raise SystemExit(f"refused: {welcome['code']}: {welcome['message']}")
        print(f"connected as {welcome['agent']} (role {welcome['role']}), newest seq {welcome['seq']}")
        self.busy = False
        pinger = asyncio.create_task(self.heartbeat(ws, welcome["heartbeat_s"]))
        try:
            await self.claim(ws)
            async for text in ws:
                await self.on_frame(ws, json.loads(text))
        finally:
            pinger.cancel()

    async def on_frame(self, ws, frame):
        if frame["type"] == "event":
            if self.acked is not None and frame["seq"] <= self.acked:
                return  # delivery is at-least-once: skip what was already processed
            data = frame["data"]
            what = (f"task {data['task']['id']} ({data['task']['state']})" if "task" in data
                    else f"from {data.get('from')}: {data.get('text')}")
            print(f"event {frame['seq']} {frame['kind']}: {what}")
            if frame["kind"] == "task.created":
                await self.claim(ws)
            elif frame["kind"] == "task.offered":  # an operator assigned a task to us
                self.busy = True
                self.spawn_work(ws, data["task"])
            self.acked = frame["seq"]
            await self.send(ws, {"type": "ack", "seq": frame["seq"]})
            with open(self.args.state, "w") as f:
                json.dump({"acked": self.acked}, f)
        elif frame["type"] == "task" and frame["re"] == "claim":
            if frame["task"] is None:
                self.busy = False  # nothing open for us; wait for task.created
            else:
                self.spawn_work(ws, frame["task"])
        elif frame["type"] == "task":
            print(f"task {frame['task']['id']} is now {frame['task']['state']}")
        elif frame["type"] == "error":
            print(f"error (re {frame['re']}): {frame['code']}: {frame['message']}")
            if frame["re"] == "claim":
                self.busy = False  # e.g. conflict: another agent was faster

    async def run(self):
        delay = 1
        while True:
            ws = None
            try:
                async with websockets.connect(self.args.url) as ws:
                    await self.session(ws)
            except websockets.ConnectionClosed:
                pass
            except (OSError, websockets.InvalidHandshake) as e:
                print(f"cannot connect: {e}")
            if ws is not None:
                print(f"connection closed: {ws.close_code} {ws.close_reason}")
                delay = 1  # we were connected: start the backoff again
            wait = delay * random.uniform(0.5, 1.0)
            print(f"reconnecting in {wait:.1f} s")
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30)


def main():
    p = argparse.ArgumentParser(description="Example swarmbridge agent")
    p.add_argument("--url", default="ws://127.0.0.1:7878/ws")
    p.add_argument("--token", default=os.environ.get("SWARMBRIDGE_TOKEN"))
    p.add_argument("--capability", action="append", default=[],
                   help="announce a capability (repeat for several)")
    p.add_argument("--state", default="agent-state.json",
                   help="file keeping the last acknowledged event seq")
    args = p.parse_args()
    if not args.token:
        p.error("give --token or set SWARMBRIDGE_TOKEN")
    try:
        asyncio.run(Agent(args).run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
