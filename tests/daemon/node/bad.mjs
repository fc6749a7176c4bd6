// Bad declarations and bad frames sent to the daemon (argv[2]: its socket), each on a
// connection of its own; what the daemon answered is reported on stdout, one JSON object a
// line. Then a good call shows that the daemon is still up.

import net from "node:net";

import { connect, provide } from "../../../clients/node/jesus.mjs";
import { encodeFrame, FrameReader, Type } from "../../../clients/node/lib/frames.mjs";

const report = (what) => process.stdout.write(`${JSON.stringify(what)}\n`);
const socket = process.argv[2];
const json = (value) => Buffer.from(JSON.stringify(value));
const CLIENT_HELLO = { protocol: "jesus", version: 1, codec: "json", compression: "none" };

// Sends `frames` after connecting; resolves with the frames the daemon sent until it closed.
function exchange(frames, { onFrame } = {}) {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection({ path: socket });
    const reader = new FrameReader(1 << 24);
    const got = [];
    const timer = setTimeout(() => reject(new Error("the daemon did not close")), 5000);
    conn.on("connect", () => frames.forEach((frame) => conn.write(frame)));
    conn.on("data", (chunk) => {
      for (const frame of reader.push(chunk)) {
        got.push(frame);
        onFrame?.(frame, conn);
      }
    });
    conn.on("error", () => {});
    conn.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

// What the connection's frames say: types, and the ERROR on stream 0 if one came.
function described(frames) {
  const error = frames.find((f) => f.type === Type.ERROR && f.stream === 0);
  return {
    types: frames.map((f) => f.type),
    error: error ? JSON.parse(error.payload.toString()) : null,
  };
}

async function refusedOffer(name, declaration, handlers = {}) {
  try {
    await provide(socket, declaration, handlers, { log: () => {} });
    report({ case: name, error: null });
  } catch (err) {
    report({ case: name, error: { code: err.code, message: err.message } });
  }
}

await refusedOffer("bad-mode", { name: "nodebad", methods: { m: { mode: "sometimes" } } }, {
  "nodebad.m": async () => null,
});
await refusedOffer("bad-key", { name: "nodebad", colour: "blue" });
await refusedOffer("not-an-object", "just a string");
await refusedOffer("bad-schema", { name: "nodebad", methods: { m: { request: { type: "nope" } } } }, {
  "nodebad.m": async () => null,
});

const hello = encodeFrame(Type.HELLO, 0, 0, json(CLIENT_HELLO));
const cases = {
  "bad-hello": [encodeFrame(Type.HELLO, 0, 0, json({ ...CLIENT_HELLO, protocol: "nope" }))],
  "not-json-hello": [encodeFrame(Type.HELLO, 0, 0, Buffer.from("{nope"))],
  "no-hello-first": [encodeFrame(Type.PING, 0, 0, Buffer.alloc(8))],
  "unknown-type": [hello, encodeFrame(0x7f, 0, 1, Buffer.alloc(0))],
  "short-ping": [hello, encodeFrame(Type.PING, 0, 0, Buffer.alloc(3))],
  "response-from-client": [hello, encodeFrame(Type.RESPONSE, 0, 1, json(1))],
  "request-on-stream-0": [hello, encodeFrame(Type.REQUEST, 0x20, 0, json(["calc.add", { c: "x" }, {}]))],
  "huge-length": [hello, Buffer.from([0xff, 0xff, 0xff, 0xff, Type.REQUEST, 0x20, 0, 0, 0, 1])],
};
for (const [name, frames] of Object.entries(cases)) {
  report({ case: name, ...described(await exchange(frames)) });
}

// A provider accepted, then breaking the protocol: a REQUEST from the serving end.
const offer = encodeFrame(
  Type.HELLO,
  0,
  0,
  json({ ...CLIENT_HELLO, provide: { name: "nodebroken", methods: { m: {} } } }),
);
const frames = await exchange([offer], {
  onFrame: (frame, conn) => {
    if (frame.type === Type.HELLO) {
      report({ case: "provider-accepted" });
      conn.write(encodeFrame(Type.REQUEST, 0x20, 1, json(["calc.add", { c: "y" }, {}])));
    }
  },
});
report({ case: "provider-breaks", ...described(frames) });

const client = await connect(socket);
report({ case: "still-up", value: await client.call("calc.add", { a: 1, b: 2 }) });
await client.close();
