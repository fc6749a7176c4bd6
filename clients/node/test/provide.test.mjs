// Services offered to a scripted daemon: the HELLO that offers them, the answers in every
// mode, streams under the daemon's credit, refusals, deadlines, GOAWAY and reconnecting.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { provide } from "../jesus.mjs";
import { json, listen, parse, Type } from "./peer.mjs";

let daemon;
before(async () => {
  daemon = await listen();
});
after(() => daemon.close());

const DECLARATION = {
  name: "greeter",
  methods: {
    hello: { request: { type: "string" } },
    record: { mode: "ack" },
    count: { mode: "stream" },
    broken: { mode: "stream" },
    boom: {},
    sleep: {},
  },
  listens: { "order.*": { schema: { type: "object" } } },
};

function handlers(seen = []) {
  return {
    "greeter.hello": async (name, call) => {
      seen.push(["hello", call.corrid, call.userid]);
      return `hello ${name}`;
    },
    "greeter.record": async (n) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      seen.push(["record", n]);
    },
    "greeter.count": async function* (n) {
      try {
        for (let i = 0; i < n; i++) yield i < 10 ? i : `item ${i}`;
      } finally {
        seen.push(["count closed"]);
      }
    },
    "greeter.broken": async function* () {
      yield "one";
      throw new TypeError("broke midway");
    },
    "greeter.boom": async () => {
      throw new RangeError("kaput");
    },
    "greeter.sleep": (ms, call) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        call.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          seen.push(["sleep stopped", call.signal.reason.code]);
          reject(call.signal.reason);
        });
      }),
    "greeter.~order.*": async (data, call) => seen.push(["event", call.event, data]),
  };
}

// A provider and the scripted daemon it offered its services to.
async function offered({ hello = {}, seen = [], options = {} } = {}) {
  const accepted = daemon.accept();
  const providing = provide(daemon.path, DECLARATION, handlers(seen), { log: () => {}, ...options });
  const peer = await accepted;
  const theirs = parse(await peer.next(Type.HELLO));
  peer.hello({ stream_window: 512, ...hello });
  return { provider: await providing, peer, theirs, seen };
}

let sids = 100;
function request(peer, method, data, mode = "response", meta = {}) {
  sids += 1;
  const flags = { noResponse: 0x00, ack: 0x10, response: 0x20, stream: 0x30 }[mode];
  peer.send(Type.REQUEST, sids, json([method, { c: `corr-${sids}`, ...meta }, data]), flags);
  return sids;
}

async function answer(peer, sid) {
  for (;;) {
    const frame = await peer.next();
    if (frame.stream === sid) return frame;
  }
}

test("the HELLO goes first and offers the declaration", async () => {
  const { provider, theirs } = await offered();
  assert.equal(theirs.codec, "json");
  assert.equal(theirs.compression, "none");
  assert.equal(theirs.max_inflight_calls, 64);
  assert.deepEqual(theirs.provide, DECLARATION);
  await provider.close();
});

test("calls are answered in every mode, listeners included", async () => {
  const { provider, peer, seen } = await offered();
  const sid = request(peer, "greeter.hello", "ann", "response", { u: "ann" });
  const response = await answer(peer, sid);
  assert.equal(response.type, Type.RESPONSE);
  assert.equal(parse(response), "hello ann");
  assert.deepEqual(seen[0], ["hello", `corr-${sid}`, "ann"]);
  // The ACK comes before the handler ends: it means accepted and valid.
  const acked = request(peer, "greeter.record", 7, "ack");
  assert.equal((await answer(peer, acked)).type, Type.ACK);
  assert.ok(!seen.some(([what]) => what === "record"));
  request(peer, "greeter.hello", "bob", "noResponse");
  request(peer, "greeter.~order.*", { id: 1 }, "ack", { e: "order.created" });
  await peer.settle(100);
  assert.deepEqual(seen.slice(1), [
    ["hello", `corr-${sid + 2}`, undefined],
    ["event", "order.created", { id: 1 }],
    ["record", 7],
  ]);
  assert.deepEqual(await peer.settle(), []); // noResponse: nothing, ever
  await provider.close();
});

test("what cannot be served is refused on the call's stream, the connection stays", async () => {
  const { provider, peer } = await offered();
  const refusal = async (sid) => {
    const frame = await answer(peer, sid);
    assert.equal(frame.type, Type.ERROR);
    return parse(frame);
  };
  let error = await refusal(request(peer, "greeter.nosuch", null));
  assert.equal(error.code, "UNKNOWN_METHOD");
  assert.match(error.corrid, /^corr-/);
  error = await refusal(request(peer, "greeter.count", 3, "response"));
  assert.equal(error.code, "INVALID_REQUEST"); // a stream called as a response
  error = await refusal(request(peer, "greeter.hello", "x", "response", { c: "" }));
  assert.equal(error.code, "INVALID_REQUEST");
  error = await refusal(request(peer, "greeter.hello", "x", "response", { d: "soon" }));
  assert.equal(error.code, "INVALID_REQUEST");
  peer.send(Type.REQUEST, 9, Buffer.from("[not json"), 0x20);
  error = await refusal(9);
  assert.equal(error.code, "PROTOCOL_ERROR");
  peer.send(Type.REQUEST, 10, json({ method: "greeter.hello" }), 0x20);
  assert.equal((await refusal(10)).code, "PROTOCOL_ERROR");
  error = await refusal(request(peer, "greeter.boom", null));
  assert.equal(error.code, "REMOTE_FAILURE");
  assert.equal(error.message, "RangeError: kaput");
  const sid = request(peer, "greeter.hello", "still here");
  assert.equal(parse(await answer(peer, sid)), "hello still here");
  await provider.close();
});

test("a stream sends no item without credit", async () => {
  const { provider, peer, seen } = await offered({ hello: { stream_window: 3 } });
  const sid = request(peer, "greeter.count", 100, "stream");
  const sent = async () => (await peer.settle(50)).filter((f) => f.stream === sid);
  assert.deepEqual((await sent()).map((f) => parse(f)), [0, 1, 2]);
  peer.send(Type.CREDIT, sid, Buffer.from([0, 0, 0, 2]));
  assert.deepEqual((await sent()).map((f) => parse(f)), [3, 4]);
  peer.send(Type.CANCEL, sid);
  await peer.settle(50);
  assert.deepEqual(seen, [["count closed"]]); // the generator was closed
  peer.send(Type.CREDIT, sid, Buffer.from([0, 0, 0, 9])); // for a closed stream: ignored
  assert.deepEqual(await sent(), []);
  await provider.close();
});

test("a byte window: a frame starts while any byte credit is left", async () => {
  const { provider, peer } = await offered({ hello: { stream_window: 100, stream_window_bytes: 5 } });
  const sid = request(peer, "greeter.count", 20, "stream");
  const sent = async () => (await peer.settle(50)).filter((f) => f.stream === sid).map(parse);
  assert.deepEqual(await sent(), [0, 1, 2, 3, 4]); // one byte each: none starts at zero
  const credit = (items, bytes) => {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(items, 0);
    payload.writeUInt32BE(bytes, 4);
    peer.send(Type.CREDIT, sid, payload);
  };
  credit(0, 1);
  assert.deepEqual(await sent(), [5]);
  credit(0, 6); // 6,7,8,9 leave 2 bytes: "item 10" (9 bytes) may overdraw them
  assert.deepEqual(await sent(), [6, 7, 8, 9, "item 10"]);
  peer.send(Type.CANCEL, sid);
  await provider.close();
});

test("end of stream, and a failure midway", async () => {
  const { provider, peer } = await offered();
  const types = async (sid) => {
    const frames = [];
    for (;;) {
      const frame = await answer(peer, sid);
      frames.push(frame);
      if (frame.type !== Type.ITEM) return frames;
    }
  };
  const ended = await types(request(peer, "greeter.count", 3, "stream"));
  assert.deepEqual(ended.map((f) => f.type), [Type.ITEM, Type.ITEM, Type.ITEM, Type.END]);
  const failed = await types(request(peer, "greeter.broken", null, "stream"));
  assert.deepEqual(failed.map((f) => f.type), [Type.ITEM, Type.ERROR]);
  assert.deepEqual(parse(failed[1]).code, "REMOTE_FAILURE");
  assert.deepEqual(parse(failed[1]).message, "TypeError: broke midway");
  await provider.close();
});

test("a cancelled call stops its handler and answers nothing", async () => {
  const { provider, peer, seen } = await offered();
  const sid = request(peer, "greeter.sleep", 5000);
  await peer.settle(20);
  peer.send(Type.CANCEL, sid);
  assert.deepEqual(await peer.settle(50), []);
  assert.deepEqual(seen, [["sleep stopped", "CANCELLED"]]);
  await provider.close();
});

test("the deadline stops the handler and answers DEADLINE_EXCEEDED", async () => {
  const { provider, peer, seen } = await offered();
  const sid = request(peer, "greeter.sleep", 5000, "response", { d: 50 });
  const frame = await answer(peer, sid);
  assert.equal(parse(frame).code, "DEADLINE_EXCEEDED");
  assert.deepEqual(seen, [["sleep stopped", "DEADLINE_EXCEEDED"]]);
  await provider.close();
});

test("more calls than max_inflight_calls are UNAVAILABLE; a noResponse one waits", async () => {
  const { provider, peer, seen } = await offered({ options: { maxInflightCalls: 1 } });
  const slow = request(peer, "greeter.sleep", 200);
  const refused = request(peer, "greeter.hello", "x");
  assert.equal(parse(await answer(peer, refused)).code, "UNAVAILABLE");
  // Nobody could be told of its refusal: it waits, and so do the frames behind it.
  const waits = request(peer, "greeter.hello", "waits", "noResponse");
  peer.send(Type.PING, 0, Buffer.from("behind!!"));
  const [first, second] = [await peer.next(), await peer.next()];
  assert.deepEqual([first.stream, second.type], [slow, Type.PONG]);
  await peer.settle(20);
  assert.deepEqual(seen, [["hello", `corr-${waits}`, undefined]]);
  await provider.close();
});

test("a refusal of the offer rejects provide() with it", async () => {
  const accepted = daemon.accept();
  const providing = provide(daemon.path, DECLARATION, handlers(), { log: () => {} });
  const peer = await accepted;
  await peer.next(Type.HELLO);
  peer.send(Type.ERROR, 0, json({ code: "INVALID_REQUEST", message: "provide methods/x: no" }));
  peer.socket.end();
  await assert.rejects(providing, { code: "INVALID_REQUEST", message: "provide methods/x: no" });
});

test("handlers must match the declaration", async () => {
  await assert.rejects(provide(daemon.path, DECLARATION, {}), TypeError);
  await assert.rejects(
    provide(daemon.path, DECLARATION, { ...handlers(), "greeter.typo": async () => null }),
    /greeter.typo/,
  );
});

test("a daemon breaking the protocol is told PROTOCOL_ERROR on stream 0", async () => {
  const { provider, peer } = await offered();
  peer.send(Type.RESPONSE, 1, json(1)); // RESPONSE goes from server to client only
  const error = await peer.next(Type.ERROR);
  assert.equal(error.stream, 0);
  assert.equal(parse(error).code, "PROTOCOL_ERROR");
  assert.equal(await peer.next(Type.HELLO, 5000).then(() => "again"), "again"); // reconnects
  await provider.close();
});

test("PING is answered, close() sends GOAWAY and answers the calls in flight", async () => {
  const { provider, peer } = await offered();
  peer.send(Type.PING, 0, Buffer.from("abcdefgh"));
  assert.equal((await peer.next(Type.PONG)).payload.toString(), "abcdefgh");
  const slow = request(peer, "greeter.sleep", 100);
  await peer.settle(20);
  const closing = provider.close();
  const goaway = parse(await peer.next(Type.GOAWAY));
  assert.equal(goaway.last_stream_id, slow);
  const late = request(peer, "greeter.hello", "late");
  assert.equal(parse(await answer(peer, late)).code, "UNAVAILABLE");
  assert.equal((await answer(peer, slow)).type, Type.RESPONSE);
  await closing;
  assert.equal(await peer.next(), null);
});

test("offered again when the connection is lost", async () => {
  const { provider, peer } = await offered();
  const again = daemon.accept();
  let reconnected = false;
  provider.on("connected", () => {
    reconnected = true;
  });
  peer.close();
  const next = await again;
  assert.deepEqual(parse(await next.next(Type.HELLO)).provide, DECLARATION);
  next.hello();
  const sid = request(next, "greeter.hello", "again");
  assert.equal(parse(await answer(next, sid)), "hello again");
  assert.ok(reconnected);
  await provider.close();
});
