// A client of the daemon (PROTOCOL.md, "Calls" and "Node daemon"): calls in every mode,
// streams under credit, events emitted, all on one multiplexed connection.

import { randomBytes } from "node:crypto";

import { decode, encode } from "./codec.mjs";
import { FrameConnection, openUnix } from "./connection.mjs";
import { errorFromPayload, JesusError, ProtocolViolation } from "./errors.mjs";
import { encodeFrame, MAX_STREAM_ID, modeFlags, Type, typeName } from "./frames.mjs";
import { helloFrame } from "./hello.mjs";
import { ClientStream } from "./stream.mjs";

const CORRID_PREFIX = randomBytes(6).toString("hex");
let corrids = 0;

export function newCorrid() {
  corrids += 1;
  return `${CORRID_PREFIX}-${corrids}`;
}

const MAX_DEADLINE = MAX_STREAM_ID; // meta `d`: milliseconds, 0..2^32-1
const CALL_MODES = { response: "response", requestResponse: "response", ack: "ack", noResponse: "noResponse" };
const EVENT_MODES = new Set(["noResponse", "ack"]);

// A client over the daemon's unix socket, once the daemon answered its HELLO.
export async function connect(socketPath, options = {}) {
  const socket = await openUnix(socketPath);
  const client = new Client(socket, options);
  await client.ready;
  return client;
}

export class Client {
  #conn;
  #calls = new Map(); // open stream id -> its answer record or ClientStream
  #seq = 0; // REQUESTs sent so far: the stream ids count up from 1 and wrap
  #goingAway = false;

  constructor(socket, options = {}) {
    this.timeout = options.timeout === undefined ? 30_000 : options.timeout; // ms; null: none
    this.name = options.name; // meta `from`: informational
    this.streamWindow = options.streamWindow ?? 512;
    this.streamWindowBytes = options.streamWindowBytes ?? 1024 * 1024;
    this.#conn = new FrameConnection(socket, options, "server", {
      receive: (frame) => this.#receive(frame),
      closed: (error) => this.#closed(error),
    });
    this.#conn.write(
      helloFrame({
        max_message_size: this.#conn.options.maxMessageSize,
        stream_window: this.streamWindow,
        stream_window_bytes: this.streamWindowBytes,
      }),
    );
    this.ready = this.#conn.ready.then(() => this);
    this.closed = this.#conn.done;
  }

  // The daemon's HELLO.
  get server() {
    return this.#conn.peer;
  }

  get usable() {
    return this.#conn.usable && !this.#goingAway;
  }

  // Resolves with the result (mode "response"), or undefined: once the daemon acknowledged
  // ("ack"), or once the request is written ("noResponse").
  async call(target, data, options = {}) {
    const mode = CALL_MODES[options.mode ?? "response"];
    if (mode === undefined) {
      throw new TypeError(
        `mode is one of response, ack, noResponse (streams: client.stream()), not ${options.mode}`,
      );
    }
    const { meta, timeout } = this.#meta(options);
    if (mode === "noResponse") {
      if (!this.#send(target, meta, data, mode)) await this.#conn.drained();
      return undefined;
    }
    return new Promise((resolve, reject) => {
      const record = { corrid: meta.c, resolve, reject, finish: null };
      const sid = this.#open(record, target, meta, data, mode);
      const timer = deadlineTimer(timeout, () => {
        this.abandon(sid, record);
        reject(deadlineError(target, timeout, meta.c));
      });
      const onAbort = () => {
        this.abandon(sid, record);
        reject(new JesusError("CANCELLED", `${target} was cancelled`, { corrid: meta.c }));
      };
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      record.finish = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
    });
  }

  // An async iterator of the stream's items; the daemon sends as many as this end gives it
  // credit for. Leaving a `for await` loop early cancels the stream.
  stream(target, data, options = {}) {
    const { meta, timeout } = this.#meta(options);
    const stream = new ClientStream(this, target, meta.c, {
      window: this.streamWindow,
      windowBytes: this.server?.capabilities.has("items") ? this.streamWindowBytes : undefined,
    });
    try {
      stream.sid = this.#open(stream, target, meta, data, "stream");
    } catch (err) {
      stream.fail(err);
      return stream;
    }
    stream.watch(timeout, options.signal, () => deadlineError(target, timeout, meta.c));
    return stream;
  }

  // An event, to every group that listens to it; with mode "ack", resolves once every group
  // acknowledged it.
  emit(event, data, options = {}) {
    const mode = options.mode ?? "noResponse";
    if (!EVENT_MODES.has(mode)) {
      return Promise.reject(
        new JesusError("INVALID_REQUEST", `an event is emitted as noResponse or ack, not ${mode}`),
      );
    }
    return this.call(`~${event}`, data, { ...options, mode });
  }

  close() {
    this.#conn.close();
    return this.closed;
  }

  // Used by streams: frames for their own stream id, and leaving it.
  write(frame) {
    return this.#conn.write(frame);
  }

  abandon(sid, record) {
    if (this.#calls.get(sid) !== record) return;
    this.#forget(sid);
    this.#conn.write(encodeFrame(Type.CANCEL, 0, sid));
  }

  #forget(sid) {
    const record = this.#calls.get(sid);
    this.#calls.delete(sid);
    record?.finish?.();
    if (this.#goingAway && this.#calls.size === 0) this.#conn.close();
  }

  #meta(options) {
    const parent = options.parent; // the call being handled: its corrid, user and time left
    const meta = { c: options.corrid ?? parent?.corrid ?? newCorrid(), o: Date.now() / 1000 };
    const userid = options.userid ?? parent?.userid;
    if (userid !== undefined) meta.u = userid;
    const traceparent = options.traceparent ?? parent?.traceparent;
    if (traceparent !== undefined) meta.t = traceparent;
    if (this.name !== undefined) meta.f = this.name;
    let timeout = options.timeout === undefined ? this.timeout : options.timeout;
    const left = parent?.remaining?.();
    if (left !== undefined) timeout = timeout == null ? left : Math.min(timeout, left);
    if (timeout != null && Number.isFinite(timeout)) {
      meta.d = Math.min(Math.max(0, Math.ceil(timeout)), MAX_DEADLINE);
    } else {
      timeout = null;
    }
    return { meta, timeout };
  }

  // Writes the REQUEST; false when the socket asks the writer to wait.
  #send(target, meta, data, mode, sid = this.#nextId()) {
    if (!this.usable) {
      throw new JesusError(
        "UNAVAILABLE",
        this.#goingAway ? "the daemon is going away" : "the connection to the daemon is closed",
        { corrid: meta.c },
      );
    }
    if (typeof target !== "string") throw new TypeError("the target is a 'service.method' string");
    let payload;
    try {
      payload = encode([target, meta, data]);
    } catch (err) {
      throw new JesusError("INVALID_REQUEST", `the request to ${target} is not JSON: ${err.message}`, {
        corrid: meta.c,
      });
    }
    const limit = this.server.max_message_size ?? this.#conn.options.maxMessageSize;
    if (payload.length > limit) {
      throw new JesusError(
        "TOO_LARGE",
        `the request to ${target} has ${payload.length} bytes, over the daemon's ${limit}`,
        { corrid: meta.c },
      );
    }
    return this.#conn.write(encodeFrame(Type.REQUEST, modeFlags(mode), sid, payload));
  }

  #open(record, target, meta, data, mode) {
    const sid = this.#nextId();
    this.#send(target, meta, data, mode, sid);
    record.seq = this.#seq;
    this.#calls.set(sid, record);
    return sid;
  }

  #nextId() {
    for (;;) {
      this.#seq += 1;
      const sid = idOf(this.#seq);
      if (!this.#calls.has(sid)) return sid;
    }
  }

  #receive(frame) {
    const { type, stream: sid, payload } = frame;
    switch (type) {
      case Type.REQUEST:
      case Type.CANCEL:
      case Type.CREDIT:
        throw new ProtocolViolation(`a client does not accept a ${typeName(type)}`);
      case Type.GOAWAY:
        this.#goaway(payload);
        return;
    }
    const record = this.#calls.get(sid);
    if (record === undefined) return; // an answer that crossed a CANCEL
    if (record instanceof ClientStream) {
      this.#streamFrame(sid, record, type, payload);
      return;
    }
    switch (type) {
      case Type.RESPONSE: {
        this.#forget(sid);
        let value;
        try {
          value = decode(payload, "RESPONSE");
        } catch (err) {
          err.corrid = record.corrid;
          record.reject(err);
          return;
        }
        record.resolve(value);
        return;
      }
      case Type.ACK:
        this.#forget(sid);
        record.resolve(undefined);
        return;
      case Type.ERROR:
        this.#forget(sid);
        record.reject(withCorrid(errorFromPayload(payload), record.corrid));
        return;
      default:
        this.abandon(sid, record);
        record.reject(
          new JesusError("PROTOCOL_ERROR", `a ${typeName(type)} answered a call that is not a stream`, {
            corrid: record.corrid,
          }),
        );
    }
  }

  #streamFrame(sid, stream, type, payload) {
    try {
      switch (type) {
        case Type.ITEM:
          stream.push([decode(payload, "ITEM")], payload.length);
          return;
        case Type.ITEMS: {
          const values = decode(payload, "ITEMS");
          if (!Array.isArray(values) || values.length === 0) {
            throw new JesusError("PROTOCOL_ERROR", "an ITEMS payload is a non-empty array");
          }
          stream.push(values, payload.length);
          return;
        }
        case Type.END:
          this.#forget(sid);
          stream.end();
          return;
        case Type.ERROR:
          this.#forget(sid);
          stream.fail(withCorrid(errorFromPayload(payload), stream.corrid));
          return;
        default:
          throw new JesusError("PROTOCOL_ERROR", `a ${typeName(type)} answered a stream`);
      }
    } catch (err) {
      this.abandon(sid, stream);
      stream.fail(withCorrid(err, stream.corrid));
    }
  }

  // The daemon drains: no new calls here; those it never read are UNAVAILABLE.
  #goaway(payload) {
    const info = decode(payload, "GOAWAY");
    const last = info?.last_stream_id;
    if (!Number.isInteger(last) || last < 0 || last > MAX_STREAM_ID) {
      throw new ProtocolViolation("GOAWAY needs a last_stream_id, an integer 0..2^32-1");
    }
    this.#goingAway = true;
    // The latest REQUEST sent with that id: ids wrap, so it is not the largest one.
    const lastSeq = last === 0 ? 0 : this.#seq - ((idOf(this.#seq) - last + MAX_STREAM_ID) % MAX_STREAM_ID);
    for (const [sid, record] of [...this.#calls]) {
      if (record.seq > lastSeq) {
        this.#forget(sid);
        const error = new JesusError("UNAVAILABLE", "the daemon went away before it read this call", {
          corrid: record.corrid,
        });
        if (record instanceof ClientStream) record.fail(error);
        else record.reject(error);
      }
    }
    if (this.#calls.size === 0) this.#conn.close();
  }

  #closed(error) {
    for (const [sid, record] of [...this.#calls]) {
      this.#calls.delete(sid);
      record.finish?.();
      const lost = withCorrid(new JesusError(error.code, error.message), record.corrid);
      if (record instanceof ClientStream) record.fail(lost);
      else record.reject(lost);
    }
  }
}

function idOf(seq) {
  return ((seq - 1) % MAX_STREAM_ID) + 1;
}

function withCorrid(error, corrid) {
  if (error instanceof JesusError && error.corrid === undefined) error.corrid = corrid;
  return error;
}

function deadlineTimer(timeout, fire) {
  return timeout == null ? null : setTimeout(fire, timeout);
}

function deadlineError(target, timeout, corrid) {
  return new JesusError("DEADLINE_EXCEEDED", `${target} did not answer within ${timeout} ms`, {
    corrid,
  });
}
