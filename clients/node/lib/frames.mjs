// Frames of the stream transport (PROTOCOL.md, "Frames"): a 10-byte header, then the payload.

import { ProtocolViolation, TooLarge } from "./errors.mjs";

export const HEADER_SIZE = 10;
export const MAX_STREAM_ID = 0xffffffff;
// HELLO, ERROR and GOAWAY up to this size are always accepted, whatever max_message_size says.
export const CONTROL_LIMIT = 64 * 1024;

export const Type = Object.freeze({
  HELLO: 0x01,
  PING: 0x02,
  PONG: 0x03,
  GOAWAY: 0x04,
  REQUEST: 0x10,
  RESPONSE: 0x11,
  ACK: 0x12,
  ERROR: 0x13,
  ITEM: 0x14,
  END: 0x15,
  CANCEL: 0x16,
  CREDIT: 0x17,
  ITEMS: 0x18,
});

const NAMES = new Map(Object.entries(Type).map(([name, code]) => [code, name]));
const CONTROL = new Set([Type.HELLO, Type.ERROR, Type.GOAWAY]);

export const COMPRESSED = 0x01;

// Response modes by name, and their number in a REQUEST's flags (bits 4-5).
export const MODES = Object.freeze({ noResponse: 0, ack: 1, response: 2, stream: 3 });
export const MODE_NAMES = ["noResponse", "ack", "response", "stream"];

export function typeName(type) {
  return NAMES.get(type) ?? `0x${type.toString(16).padStart(2, "0")}`;
}

export function modeOf(flags) {
  return MODE_NAMES[(flags >> 4) & 0x03];
}

export function modeFlags(mode) {
  return MODES[mode] << 4;
}

const EMPTY = Buffer.alloc(0);

export function encodeFrame(type, flags, stream, payload = EMPTY) {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32BE(payload.length, 0);
  header[4] = type;
  header[5] = flags;
  header.writeUInt32BE(stream, 6);
  return payload.length ? Buffer.concat([header, payload]) : header;
}

// An ERROR frame carrying `error`, a JesusError.
export function errorFrame(stream, error) {
  return encodeFrame(Type.ERROR, 0, stream, Buffer.from(JSON.stringify(error.toJSON()), "utf8"));
}

// CREDIT: 4 bytes of items, or 8 bytes of items then bytes (only to a server that said "items").
export function encodeCredit(stream, items, bytes) {
  const payload = Buffer.allocUnsafe(bytes === undefined ? 4 : 8);
  payload.writeUInt32BE(Math.min(items, MAX_STREAM_ID), 0);
  if (bytes !== undefined) payload.writeUInt32BE(Math.min(bytes, MAX_STREAM_ID), 4);
  return encodeFrame(Type.CREDIT, 0, stream, payload);
}

export function decodeCredit(payload) {
  if (payload.length === 4) return { items: payload.readUInt32BE(0), bytes: undefined };
  if (payload.length === 8) {
    return { items: payload.readUInt32BE(0), bytes: payload.readUInt32BE(4) };
  }
  throw new ProtocolViolation(`a CREDIT payload has 4 or 8 bytes, not ${payload.length}`);
}

// Bytes in, whole frames out. The length is checked before the payload is buffered.
export class FrameReader {
  #chunks = [];
  #size = 0;
  #header = null;

  constructor(maxMessageSize) {
    this.maxMessageSize = maxMessageSize;
  }

  push(chunk) {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    const frames = [];
    for (;;) {
      if (this.#header === null) {
        if (this.#size < HEADER_SIZE) break;
        const raw = this.#take(HEADER_SIZE);
        const header = {
          length: raw.readUInt32BE(0),
          type: raw[4],
          flags: raw[5],
          stream: raw.readUInt32BE(6),
        };
        if (!NAMES.has(header.type)) {
          throw new ProtocolViolation(`unknown frame type ${typeName(header.type)}`);
        }
        const limit = CONTROL.has(header.type)
          ? Math.max(CONTROL_LIMIT, this.maxMessageSize)
          : this.maxMessageSize;
        if (header.length > limit) {
          throw new TooLarge(
            `a ${typeName(header.type)} frame of ${header.length} bytes is over the limit (${limit})`,
          );
        }
        this.#header = header;
      }
      if (this.#size < this.#header.length) break;
      const frame = this.#header;
      frame.payload = frame.length ? this.#take(frame.length) : EMPTY;
      this.#header = null;
      frames.push(frame);
    }
    return frames;
  }

  #take(n) {
    const first = this.#chunks[0];
    this.#size -= n;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const chunk = this.#chunks[0];
      const k = Math.min(chunk.length, n - offset);
      chunk.copy(out, offset, 0, k);
      if (k === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(k);
      offset += k;
    }
    return out;
  }
}
