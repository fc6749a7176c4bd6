// A Node process that calls Python services through the daemon (argv[2]: its socket) in
// every mode and emits an event, reporting each outcome on stdout (one JSON object a line);
// it also listens to `user.*` and exits once the Python side's event reached it.

import { connect, provide } from "../../../clients/node/jesus.mjs";

const report = (what) => process.stdout.write(`${JSON.stringify(what)}\n`);
const socket = process.argv[2];

let heard;
const event = new Promise((resolve) => {
  heard = resolve;
});
const audit = await provide(
  socket,
  { name: "nodeaudit", listens: { "user.*": { schema: { type: "object", required: ["id"] } } } },
  { "nodeaudit.~user.*": async (data, call) => heard({ event: call.event, data }) },
  { log: () => {} },
);

const client = await connect(socket, { name: "nodecaller" });

async function step(name, run) {
  try {
    report({ step: name, value: (await run()) ?? null });
  } catch (err) {
    const { code, message, corrid, details } = err;
    report({ step: name, error: { code, message, corrid: corrid ?? null, details: details ?? null } });
  }
}

await step("add", () => client.call("calc.add", { a: 20, b: 22 }, { corrid: "node-corrid-1" }));
await step("record", () => client.call("calc.record", { n: 1 }, { mode: "ack" }));
await step("fire", () => client.call("calc.fire", { n: 2 }, { mode: "noResponse" }));
await step("count", async () => {
  const items = [];
  for await (const item of client.stream("calc.count", { n: 1500 })) items.push(item);
  return items;
});
await step("count-fails", async () => {
  const items = [];
  try {
    for await (const item of client.stream("calc.count", { n: 3, fail: true })) items.push(item);
  } catch (err) {
    return { items, code: err.code, corrid: err.corrid ?? null };
  }
  return { items };
});
await step("count-left", async () => {
  const items = [];
  for await (const item of client.stream("calc.count", { n: 100000, delay: 0.001 })) {
    items.push(item);
    if (items.length === 5) break; // cancels the stream
  }
  return items;
});
await step("boom", () => client.call("calc.boom", null));
await step("invalid", () => client.call("calc.add", { a: "x", b: 1 }));
await step("nosuch", () => client.call("nosuch.add", { a: 1, b: 1 }));
await step("deadline", () => client.call("calc.sleep", 30, { timeout: 300 }));
await step("emit", () => client.emit("audit.logged", { id: 7 }, { mode: "ack" }));
await step("emit-bad-mode", () => client.emit("audit.logged", { id: 7 }, { mode: "response" }));
report({ done: true });

report(await event);
await client.close();
await audit.close();
