// A Node service offered through the daemon (argv[2]: its socket). Every call it gets is
// reported on stdout, one JSON object a line, for the Python test to read.

import { provide } from "../../../clients/node/jesus.mjs";

const report = (what) => process.stdout.write(`${JSON.stringify(what)}\n`);
const NUMBER = { type: "integer" };
const PAIR = {
  type: "object",
  properties: { a: NUMBER, b: NUMBER },
  required: ["a", "b"],
  additionalProperties: false,
};

const declaration = {
  name: "nodecalc",
  version: "1.0.0",
  channel: "tcp+msgpack",
  methods: {
    add: { request: PAIR, response: NUMBER },
    broken: { response: NUMBER },
    boom: {},
    refuse: {},
    sleep: { request: NUMBER },
    record: { mode: "ack", request: NUMBER, channel: "http+json" },
    forget: { mode: "noResponse", request: NUMBER },
    count: { mode: "stream", request: NUMBER, response: NUMBER, channel: ["unix+msgpack"] },
  },
  listens: { "order.*": { schema: { type: "object", required: ["id"] } } },
};

const handlers = {
  "nodecalc.add": async ({ a, b }, call) => {
    report({ seen: "add", data: { a, b }, corrid: call.corrid, deadline: call.remaining() });
    return a + b;
  },
  "nodecalc.broken": async () => "not a number",
  "nodecalc.boom": async () => {
    throw new RangeError("kaput");
  },
  "nodecalc.refuse": async () => {
    throw Object.assign(new Error("not this one"), { code: "INVALID_REQUEST", details: ["/: no"] });
  },
  "nodecalc.sleep": (ms, call) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve("slept"), ms);
      call.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        report({ seen: "sleep", stopped: call.signal.reason.code });
        reject(call.signal.reason);
      });
    }),
  "nodecalc.record": async (n) => report({ seen: "record", data: n }),
  "nodecalc.forget": async (n) => report({ seen: "forget", data: n }),
  "nodecalc.count": async function* (n) {
    let produced = 0;
    try {
      for (; produced < n; produced++) yield produced;
    } finally {
      report({ seen: "count", produced, finished: produced === n });
    }
  },
  "nodecalc.~order.*": async (data, call) => report({ event: call.event, id: data.id }),
};

const provider = await provide(process.argv[2], declaration, handlers, { log: () => {} });
provider.on("connected", () => report({ reconnected: true }));
provider.on("disconnected", (error) => report({ disconnected: error?.code ?? null }));
process.on("SIGTERM", async () => {
  await provider.close();
  report({ closed: true });
  process.exit(0);
});
report({ ready: true });
