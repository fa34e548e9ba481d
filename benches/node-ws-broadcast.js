// Reference broadcast server for `loadgen fanout --target external`:
// the same protocol as loadgen's bare server. A connection whose first
// message is "pub" publishes: each of its messages goes to every other
// connection and is answered "ok". Run with `npm install ws` then
// `node benches/node-ws-broadcast.js 127.0.0.1 9400`.
const { WebSocketServer } = require("ws");
const [host, port] = [process.argv[2] || "127.0.0.1", Number(process.argv[3] || 9400)];
const wss = new WebSocketServer({ host, port, perMessageDeflate: false });
const subs = new Set();
wss.on("connection", (ws) => {
  let role = null;
  ws.on("message", (data, isBinary) => {
    if (role === null) {
      role = data.toString() === "pub" ? "pub" : "sub";
      if (role === "sub") subs.add(ws);
      return;
    }
    if (role !== "pub") return;
    for (const s of subs) s.send(data, { binary: isBinary });
    ws.send("ok");
  });
  ws.on("close", () => subs.delete(ws));
});
