// The client against a scripted daemon: its HELLO, credit, GOAWAY, keep-alive, and what it
// does with a daemon that breaks the protocol.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { connect } from "../jesus.mjs";
import { json, listen, parse, Type } from "./peer.mjs";

let daemon;
before(async () => {
  daemon = await listen();
});
after(() => daemon.close());

// A client and the peer it connected to, past the handshake.
async function connected(options = {}, hello = {}) {
  const accepted = daemon.accept();
  const connecting = connect(daemon.path, options);
  const peer = await accepted;
  const theirs = parse(await peer.next(Type.HELLO));
  peer.hello({ max_message_size: 1 << 20, capabilities: ["items"], ...hello });
  return { client: await connecting, peer, theirs };
}

test("the HELLO says json, none, the windows and the capabilities", async () => {
  const { client, theirs } = await connected({ streamWindow: 64 });
  assert.equal(theirs.protocol, "jesus");
  assert.equal(theirs.version, 1);
  assert.equal(theirs.codec, "json");
  assert.equal(theirs.compression, "none");
  assert.equal(theirs.stream_window, 64);
  assert.equal(theirs.stream_window_bytes, 1024 * 1024);
  assert.ok(theirs.capabilities.includes("items"));
  await client.close();
});

test("a refused handshake rejects with the daemon's error", async () => {
  const accepted = daemon.accept();
  const connecting = connect(daemon.path);
  const peer = await accepted;
  await peer.next(Type.HELLO);
  peer.send(Type.ERROR, 0, json({ code: "UNAVAILABLE", message: "too many connections" }));
  peer.socket.end();
  await assert.rejects(connecting, { code: "UNAVAILABLE", message: "too many connections" });
});

test("no daemon is one clear error", async () => {
  await assert.rejects(connect("/nonexistent/jesus.sock"), {
    code: "UNAVAILABLE",
    message: /no daemon listens on \/nonexistent\/jesus.sock/,
  });
});

test("calls carry their meta and get their answers in any order", async () => {
  const { client, peer } = await connected({ name: "tester" });
  const first = client.call("calc.add", { a: 1 }, { corrid: "c-1", userid: "ann", timeout: 5000 });
  const second = client.call("calc.record", 3, { mode: "ack" });
  const one = await peer.next(Type.REQUEST);
  const two = await peer.next(Type.REQUEST);
  const [method, meta, data] = parse(one);
  assert.equal(method, "calc.add");
  assert.deepEqual(data, { a: 1 });
  assert.equal(meta.c, "c-1");
  assert.equal(meta.u, "ann");
  assert.equal(meta.f, "tester");
  assert.equal(meta.d, 5000);
  assert.equal(one.flags, 0x20);
  assert.equal(two.flags, 0x10);
  peer.send(Type.ACK, two.stream);
  peer.send(Type.RESPONSE, one.stream, json(42));
  assert.equal(await first, 42);
  assert.equal(await second, undefined);
  await client.close();
});

test("an ERROR rejects the call with its code, message, corrid and details", async () => {
  const { client, peer } = await connected();
  const call = client.call("calc.add", {}, { corrid: "c-2" });
  const request = await peer.next(Type.REQUEST);
  peer.send(Type.ERROR, request.stream, json({ code: "INVALID_REQUEST", message: "bad", details: ["/a: no"] }));
  await assert.rejects(call, { code: "INVALID_REQUEST", message: "bad", corrid: "c-2", details: ["/a: no"] });
  const other = client.call("calc.add", {});
  peer.send(Type.ERROR, (await peer.next(Type.REQUEST)).stream, json({ code: "NEW_CODE", message: "hm" }));
  await assert.rejects(other, { code: "REMOTE_FAILURE" }); // an unknown code
  await client.close();
});

test("a deadline passes: DEADLINE_EXCEEDED, and the call is cancelled", async () => {
  const { client, peer } = await connected();
  const call = client.call("calc.sleep", 1, { timeout: 50 });
  const request = await peer.next(Type.REQUEST);
  await assert.rejects(call, { code: "DEADLINE_EXCEEDED" });
  const cancel = await peer.next(Type.CANCEL);
  assert.equal(cancel.stream, request.stream);
  peer.send(Type.RESPONSE, request.stream, json("late")); // crossed the CANCEL: ignored
  peer.send(Type.PING, 0, Buffer.from("12345678"));
  assert.equal((await peer.next(Type.PONG)).payload.toString(), "12345678");
  await client.close();
});

test("a stream gives credit back as the consumer takes items, in items and bytes", async () => {
  const { client, peer } = await connected({ streamWindow: 4, streamWindowBytes: 100 });
  const items = client.stream("calc.count", 10)[Symbol.asyncIterator]();
  const request = await peer.next(Type.REQUEST);
  assert.equal(request.flags, 0x30);
  const sid = request.stream;
  peer.send(Type.ITEM, sid, json(0));
  peer.send(Type.ITEMS, sid, json([1, 2, 3]));
  assert.deepEqual(await items.next(), { value: 0, done: false });
  assert.deepEqual(await peer.settle(50), []); // one taken: no credit yet
  assert.deepEqual(await items.next(), { value: 1, done: false });
  const credit = await peer.next(Type.CREDIT);
  assert.equal(credit.stream, sid);
  // Two items, and the bytes of the two frames they came in (1 and 7).
  assert.deepEqual([credit.payload.readUInt32BE(0), credit.payload.readUInt32BE(4)], [2, 8]);
  peer.send(Type.ITEMS, sid, json([4, 5]));
  peer.send(Type.END, sid);
  const rest = [];
  for (;;) {
    const { value, done } = await items.next();
    if (done) break;
    rest.push(value);
  }
  assert.deepEqual(rest, [2, 3, 4, 5]);
  await client.close();
});

test("items beyond the credit fail the stream and cancel it", async () => {
  const { client, peer } = await connected({ streamWindow: 2 });
  const items = client.stream("calc.count", 10)[Symbol.asyncIterator]();
  const { stream: sid } = await peer.next(Type.REQUEST);
  peer.send(Type.ITEMS, sid, json([0, 1, 2]));
  await assert.rejects(items.next(), { code: "PROTOCOL_ERROR" });
  assert.equal((await peer.next(Type.CANCEL)).stream, sid);
  await client.close();
});

test("leaving a stream early cancels it", async () => {
  const { client, peer } = await connected();
  const stream = client.stream("calc.count", 10);
  const { stream: sid } = await peer.next(Type.REQUEST);
  peer.send(Type.ITEM, sid, json("a"));
  for await (const item of stream) {
    assert.equal(item, "a");
    break;
  }
  assert.equal((await peer.next(Type.CANCEL)).stream, sid);
  await client.close();
});

test("credit of items alone to a daemon that did not say items", async () => {
  const { client, peer } = await connected({ streamWindow: 2 }, { capabilities: [] });
  const items = client.stream("calc.count", 10)[Symbol.asyncIterator]();
  const { stream: sid } = await peer.next(Type.REQUEST);
  peer.send(Type.ITEM, sid, json(0));
  await items.next();
  assert.equal((await peer.next(Type.CREDIT)).payload.length, 4);
  await client.close();
});

test("GOAWAY: calls the daemon never read are UNAVAILABLE, the others answered", async () => {
  const { client, peer } = await connected();
  const calls = [1, 2, 3].map((n) => client.call("calc.echo", n));
  const sids = [];
  for (let i = 0; i < 3; i++) sids.push((await peer.next(Type.REQUEST)).stream);
  peer.send(Type.GOAWAY, 0, json({ last_stream_id: sids[1], reason: "draining" }));
  await assert.rejects(calls[2], { code: "UNAVAILABLE" });
  await assert.rejects(client.call("calc.echo", 4), { code: "UNAVAILABLE", message: /going away/ });
  peer.send(Type.RESPONSE, sids[0], json(1));
  peer.send(Type.RESPONSE, sids[1], json(2));
  assert.deepEqual(await Promise.all(calls.slice(0, 2)), [1, 2]);
  assert.equal(await peer.next(), null); // every call answered: the client closed
});

test("a daemon that breaks the protocol is told, and the calls fail", async () => {
  const { client, peer } = await connected();
  const call = client.call("calc.echo", 1);
  await peer.next(Type.REQUEST);
  peer.send(Type.CREDIT, 1, Buffer.alloc(4)); // CREDIT goes from client to server only
  const error = await peer.next(Type.ERROR);
  assert.equal(error.stream, 0);
  assert.equal(parse(error).code, "PROTOCOL_ERROR");
  await assert.rejects(call, { code: "PROTOCOL_ERROR" });
  await client.closed;
});

test("a lost connection fails the calls in flight with UNAVAILABLE", async () => {
  const { client, peer } = await connected();
  const call = client.call("calc.echo", 1);
  await peer.next(Type.REQUEST);
  peer.close();
  await assert.rejects(call, { code: "UNAVAILABLE" });
  await assert.rejects(client.call("calc.echo", 2), { code: "UNAVAILABLE" });
});

test("a request over the daemon's max_message_size fails locally", async () => {
  const { client } = await connected({}, { max_message_size: 64 });
  await assert.rejects(client.call("calc.echo", "x".repeat(100)), { code: "TOO_LARGE" });
  await client.close();
});

test("emit is a REQUEST for ~event, in noResponse or ack", async () => {
  const { client, peer } = await connected();
  await client.emit("user.created", { id: 1 });
  const request = await peer.next(Type.REQUEST);
  assert.equal(request.flags, 0x00);
  assert.equal(parse(request)[0], "~user.created");
  await assert.rejects(client.emit("user.created", {}, { mode: "stream" }), { code: "INVALID_REQUEST" });
  await client.close();
});
