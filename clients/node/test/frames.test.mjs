// The golden vectors of PROTOCOL.md, and frames read from any split of the bytes.

import assert from "node:assert/strict";
import { test } from "node:test";

import { JesusError } from "../lib/errors.mjs";
import {
  decodeCredit,
  encodeCredit,
  encodeFrame,
  errorFrame,
  FrameReader,
  modeFlags,
  modeOf,
  Type,
} from "../lib/frames.mjs";

const hex = (text) => Buffer.from(text.replaceAll(" ", ""), "hex");
const utf8 = (text) => Buffer.from(text, "utf8");

test("the golden vectors", () => {
  const vectors = [
    [encodeFrame(Type.PING, 0, 0, hex("0001020304050607")), hex("00000008 02 00 00000000 0001020304050607")],
    [encodeFrame(Type.ACK, 0, 7), hex("00000000 12 00 00000007")],
    [encodeFrame(Type.END, 0, 9), hex("00000000 15 00 00000009")],
    [encodeFrame(Type.CANCEL, 0, 3), hex("00000000 16 00 00000003")],
    [encodeCredit(3, 16), hex("00000004 17 00 00000003 00000010")],
    [encodeCredit(3, 16, 4096), hex("00000008 17 00 00000003 00000010 00001000")],
    [
      encodeFrame(Type.REQUEST, modeFlags("ack"), 2, utf8('["calc.add",{"c":"x-1"},{"a":1,"b":2}]')),
      Buffer.concat([hex("00000026 10 10 00000002"), utf8('["calc.add",{"c":"x-1"},{"a":1,"b":2}]')]),
    ],
    [
      errorFrame(5, new JesusError("UNKNOWN_METHOD", "no", { corrid: "x-1" })),
      Buffer.concat([
        hex("00000037 13 00 00000005"),
        utf8('{"code":"UNKNOWN_METHOD","message":"no","corrid":"x-1"}'),
      ]),
    ],
  ];
  for (const [made, expected] of vectors) assert.deepEqual(made, expected);
});

test("modes travel in bits 4 and 5 of a REQUEST's flags", () => {
  for (const mode of ["noResponse", "ack", "response", "stream"]) {
    assert.equal(modeOf(modeFlags(mode) | 0x01), mode);
  }
  assert.equal(modeFlags("response"), 0x20);
});

test("credits of 4 and 8 bytes are read, others refused", () => {
  assert.deepEqual(decodeCredit(hex("00000010")), { items: 16, bytes: undefined });
  assert.deepEqual(decodeCredit(hex("00000010 00001000")), { items: 16, bytes: 4096 });
  assert.throws(() => decodeCredit(hex("0010")), { code: "PROTOCOL_ERROR" });
});

test("frames come out whole however the bytes are split", () => {
  const bytes = Buffer.concat([
    encodeFrame(Type.ITEM, 0, 1, utf8("[1,2,3]")),
    encodeFrame(Type.END, 0, 1),
    encodeFrame(Type.RESPONSE, 0, 2, utf8('"ok"')),
  ]);
  for (const size of [1, 3, 10, 11, bytes.length]) {
    const reader = new FrameReader(1024);
    const frames = [];
    for (let i = 0; i < bytes.length; i += size) frames.push(...reader.push(bytes.subarray(i, i + size)));
    assert.deepEqual(
      frames.map((f) => [f.type, f.stream, f.payload.toString()]),
      [
        [Type.ITEM, 1, "[1,2,3]"],
        [Type.END, 1, ""],
        [Type.RESPONSE, 2, '"ok"'],
      ],
    );
  }
});

test("a length over the limit is refused from the header alone", () => {
  const reader = new FrameReader(100);
  assert.throws(() => reader.push(hex("ffffffff 11 00 00000001")), { code: "TOO_LARGE" });
  // Control frames up to 64 KiB are always accepted.
  const hello = encodeFrame(Type.HELLO, 0, 0, Buffer.alloc(1000, 0x20));
  assert.equal(new FrameReader(100).push(hello).length, 1);
});

test("an unknown frame type is a protocol violation", () => {
  assert.throws(() => new FrameReader(100).push(hex("00000000 7f 00 00000001")), {
    code: "PROTOCOL_ERROR",
  });
});
