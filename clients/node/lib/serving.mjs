// One connection over which this process serves the daemon's calls (PROTOCOL.md, "Offering
// services through the daemon"): its HELLO goes first and offers the services, then it
// answers as a server does, streams under the daemon's credit.

import { decode, encode } from "./codec.mjs";
import { FrameConnection } from "./connection.mjs";
import { errorOfThrown, JesusError, ProtocolViolation } from "./errors.mjs";
import { decodeCredit, encodeFrame, errorFrame, modeOf, Type, typeName } from "./frames.mjs";
import { helloFrame } from "./hello.mjs";

const DEFAULT_WINDOW = 32; // a client's stream_window when its HELLO has none
const MAX_DEADLINE = 0xffffffff;

// Known meta keys and what each must be (PROTOCOL.md, "Envelope and meta").
const META_TYPES = {
  u: "string",
  f: "string",
  o: "number",
  t: "string",
  h: "string",
  e: "string",
};

export class ServedConnection {
  #conn;
  #calls = new Map(); // open stream id -> its call
  #running = 0;
  #lastRequest = 0;
  #goingAway = false;
  #idle = [];

  // `methods`: "service.method" -> {handler, mode}, the mode as declared ("listener" for
  // a listener, which is called in the event's mode).
  constructor(socket, { declaration, methods, options, log }) {
    this.methods = methods;
    this.log = log;
    this.maxInflight = options.maxInflightCalls ?? 64;
    this.#conn = new FrameConnection(socket, options, "client", {
      receive: (frame) => this.#receive(frame),
      closed: (error) => {
        this.closedBy = error;
        this.#closed();
      },
    });
    this.#conn.write(
      helloFrame({
        max_message_size: this.#conn.options.maxMessageSize,
        max_inflight_calls: this.maxInflight,
        provide: declaration,
      }),
    );
    this.ready = this.#conn.ready;
    this.done = this.#conn.done;
  }

  get failure() {
    return this.#conn.failure;
  }

  // Tell the daemon to send no more calls (GOAWAY), answer those it sent, then close.
  async shutdown(drainTimeout, reason = "shutting down") {
    if (!this.#conn.closing && this.#conn.peer !== null) {
      this.#goingAway = true;
      this.#conn.write(
        encodeFrame(
          Type.GOAWAY,
          0,
          0,
          Buffer.from(JSON.stringify({ last_stream_id: this.#lastRequest, reason })),
        ),
      );
      let timer;
      await Promise.race([
        this.#drained(),
        new Promise((resolve) => {
          timer = setTimeout(resolve, drainTimeout);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#conn.close();
    await this.done;
  }

  #drained() {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  get #full() {
    return this.#running >= this.maxInflight;
  }

  #receive(frame) {
    const { type, stream: sid, payload } = frame;
    switch (type) {
      case Type.REQUEST:
        if (modeOf(frame.flags) === "noResponse" && this.#full && !this.#goingAway) {
          // Nobody could be told of a refusal: stop reading until a call ends.
          this.#conn.hold(frame);
          return;
        }
        this.#request(frame);
        return;
      case Type.CREDIT: {
        const { items, bytes } = decodeCredit(payload);
        this.#calls.get(sid)?.grant(items, bytes);
        return;
      }
      case Type.CANCEL:
      case Type.ERROR: // from the client, on a call's stream: it abandons the call
        this.#calls.get(sid)?.stop(new JesusError("CANCELLED", "the caller cancelled the call"));
        return;
      default:
        throw new ProtocolViolation(`a server does not accept a ${typeName(type)}`);
    }
  }

  #request({ stream: sid, flags, payload }) {
    if (sid === 0) throw new ProtocolViolation("a REQUEST on stream 0");
    if (this.#calls.has(sid)) throw new ProtocolViolation(`stream ${sid} is open already`);
    this.#lastRequest = sid;
    const mode = modeOf(flags);
    const refuse = (code, message, corrid) => {
      const error = new JesusError(code, message, { corrid });
      if (mode === "noResponse") this.log(`refused a noResponse call: ${message}`);
      else this.#conn.write(errorFrame(sid, error));
    };
    if (this.#goingAway) return refuse("UNAVAILABLE", "this process is shutting down");
    if (this.#full) {
      return refuse("UNAVAILABLE", `already ${this.maxInflight} calls at once (max_inflight_calls)`);
    }
    let envelope;
    try {
      envelope = decode(payload, "REQUEST");
    } catch (err) {
      return refuse(err.code, err.message);
    }
    if (!Array.isArray(envelope) || envelope.length !== 3 || typeof envelope[0] !== "string") {
      return refuse("PROTOCOL_ERROR", "a REQUEST is the array [method, meta, data]");
    }
    const [method, meta, data] = envelope;
    const bad = badMeta(meta);
    if (bad) return refuse("INVALID_REQUEST", `bad meta: ${bad}`);
    const served = Object.hasOwn(this.methods, method) ? this.methods[method] : undefined;
    if (served === undefined) {
      return refuse("UNKNOWN_METHOD", `no method ${method} here`, meta.c);
    }
    if (meta.s !== undefined) {
      return refuse("SEAL_REFUSED", `${method} is not sealed here: the daemon opens seals`, meta.c);
    }
    if ((served.mode === "stream") !== (mode === "stream")) {
      const declared = served.mode === "listener" ? "a listener" : `a ${served.mode} method`;
      return refuse("INVALID_REQUEST", `${method} is ${declared}, not called as ${mode}`, meta.c);
    }
    const call = new ServedCall(sid, method, mode, meta);
    if (mode !== "noResponse") this.#calls.set(sid, call);
    this.#run(call, served.handler, data);
  }

  async #run(call, handler, data) {
    this.#running += 1;
    call.onStop = () => {
      if (this.#calls.get(call.sid) === call) this.#calls.delete(call.sid);
    };
    call.onDeadline = (error) => {
      if (call.mode === "response" || call.mode === "stream") this.#answer(call, errorFrame(call.sid, error));
    };
    try {
      switch (call.mode) {
        case "response":
          await this.#respond(call, handler, data);
          break;
        case "stream":
          await this.#stream(call, handler, data);
          break;
        default:
          if (call.mode === "ack") this.#answer(call, encodeFrame(Type.ACK, 0, call.sid));
          try {
            await handler(data, call.context);
          } catch (err) {
            this.log(`${call.method} (${call.mode}) failed: ${err?.stack ?? err}`);
          }
      }
    } finally {
      call.finish();
      this.#running -= 1;
      this.#room();
    }
  }

  async #respond(call, handler, data) {
    let frame;
    try {
      const result = await handler(data, call.context);
      frame = encodeFrame(Type.RESPONSE, 0, call.sid, this.#encode(result, call));
    } catch (err) {
      frame = errorFrame(call.sid, errorOfThrown(err, call.context.corrid));
    }
    this.#answer(call, frame);
  }

  async #stream(call, handler, data) {
    call.credit = this.#conn.peer.stream_window ?? DEFAULT_WINDOW;
    call.creditBytes = this.#conn.peer.stream_window_bytes; // undefined: items alone
    let iterator = null;
    let pulling = false;
    try {
      iterator = iteratorOf(handler(data, call.context), call.method);
      for (;;) {
        await call.credited();
        if (!call.open) return;
        pulling = true;
        const { value, done } = await iterator.next();
        pulling = false;
        if (!call.open) return;
        if (done) {
          iterator = null;
          this.#answer(call, encodeFrame(Type.END, 0, call.sid));
          return;
        }
        const payload = this.#encode(value, call);
        call.spend(payload.length);
        if (!this.#conn.write(encodeFrame(Type.ITEM, 0, call.sid, payload))) {
          await this.#conn.drained();
        }
      }
    } catch (err) {
      if (pulling) iterator = null; // it threw: it is done
      this.#answer(call, errorFrame(call.sid, errorOfThrown(err, call.context.corrid)));
    } finally {
      try {
        await iterator?.return?.();
      } catch (err) {
        this.log(`${call.method}: the stream failed as it was closed: ${err?.stack ?? err}`);
      }
    }
  }

  #encode(value, call) {
    let payload;
    try {
      payload = encode(value);
    } catch (err) {
      throw new JesusError("INVALID_RESPONSE", `${call.method} answered what JSON cannot carry: ${err.message}`);
    }
    const limit = this.#conn.peer.max_message_size;
    if (limit !== undefined && payload.length > limit) {
      throw new JesusError("TOO_LARGE", `${call.method} answered ${payload.length} bytes, over ${limit}`);
    }
    return payload;
  }

  // The call's last frame, unless it was cancelled or its deadline answered first.
  #answer(call, frame) {
    if (!call.open) return;
    call.stop(null);
    this.#conn.write(frame);
  }

  // A call ended: frames that waited for room go on, in order.
  #room() {
    if (this.#conn.holding) this.#conn.release();
    if (this.#running === 0) this.#idle.splice(0).forEach((resolve) => resolve());
  }

  // Nobody is left to answer: response and stream calls stop; ack and noResponse calls, which
  // were accepted, run to their end.
  #closed() {
    for (const call of [...this.#calls.values()]) {
      call.stop(new JesusError("UNAVAILABLE", "the connection to the daemon was closed"));
    }
  }
}

// One call being served; `context` is what its handler gets.
class ServedCall {
  #controller = new AbortController();
  #deadlineTimer = null;
  #waiter = null;

  constructor(sid, method, mode, meta) {
    this.sid = sid;
    this.method = method;
    this.mode = mode;
    this.open = true; // its answer may still go
    this.credit = 0;
    this.creditBytes = undefined;
    this.onStop = null;
    this.onDeadline = null;
    const deadline = meta.d === undefined ? undefined : Date.now() + meta.d;
    this.context = {
      method,
      mode,
      corrid: meta.c,
      userid: meta.u,
      from: meta.f,
      traceparent: meta.t,
      event: meta.e,
      meta,
      deadline, // ms since the epoch, or undefined
      signal: this.#controller.signal, // aborted on cancel, deadline, or a lost connection
      remaining: () => (deadline === undefined ? undefined : Math.max(0, deadline - Date.now())),
    };
    if (deadline !== undefined) {
      this.#deadlineTimer = setTimeout(() => {
        const error = new JesusError("DEADLINE_EXCEEDED", `${method} ran past its deadline`, {
          corrid: meta.c,
        });
        this.onDeadline?.(error);
        this.stop(error);
      }, meta.d);
    }
  }

  // No more answers; with `reason`, the handler is told to stop.
  stop(reason) {
    this.open = false;
    this.onStop?.();
    if (reason) this.#controller.abort(reason);
    this.#wake();
  }

  finish() {
    clearTimeout(this.#deadlineTimer);
    this.onStop?.();
  }

  grant(items, bytes) {
    this.credit += items;
    if (bytes !== undefined && this.creditBytes !== undefined) this.creditBytes += bytes;
    this.#wake();
  }

  // A frame may start while any credit is left: the byte window may overdraw by one frame.
  async credited() {
    while (this.open && !(this.credit > 0 && (this.creditBytes === undefined || this.creditBytes > 0))) {
      await new Promise((resolve) => {
        this.#waiter = resolve;
      });
    }
  }

  spend(bytes) {
    this.credit -= 1;
    if (this.creditBytes !== undefined) this.creditBytes -= bytes;
  }

  #wake() {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }
}

function iteratorOf(produced, method) {
  if (produced != null && typeof produced[Symbol.asyncIterator] === "function") {
    return produced[Symbol.asyncIterator]();
  }
  if (produced != null && typeof produced[Symbol.iterator] === "function") {
    return produced[Symbol.iterator]();
  }
  throw new JesusError(
    "INVALID_RESPONSE",
    `${method} is a stream: its handler returns an iterable (an async generator)`,
  );
}

// What is wrong with a REQUEST's meta, or null.
function badMeta(meta) {
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) return "meta is a map";
  const c = meta.c;
  if (typeof c !== "string" || c.length < 1 || c.length > 128) {
    return "c (corrid) is a string of 1 to 128 characters";
  }
  for (const [key, type] of Object.entries(META_TYPES)) {
    if (key in meta && typeof meta[key] !== type) return `${key} is a ${type}`;
  }
  if ("d" in meta && !(Number.isInteger(meta.d) && meta.d >= 0 && meta.d <= MAX_DEADLINE)) {
    return "d (deadline) is an integer of milliseconds, 0 to 2^32-1";
  }
  if ("x" in meta && (meta.x === null || typeof meta.x !== "object" || Array.isArray(meta.x))) {
    return "x (extra) is a map";
  }
  if ("s" in meta && meta.s !== "sign" && meta.s !== "encrypt") return 's (seal) is "sign" or "encrypt"';
  return null;
}
