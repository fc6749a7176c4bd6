// One connection to the daemon's unix socket, whichever end plays the server: frames read
// and checked, the handshake, keep-alive, writes under back-pressure, and the way it closes.

import { randomBytes } from "node:crypto";
import net from "node:net";

import { errorFromPayload, JesusError, ProtocolViolation } from "./errors.mjs";
import { encodeFrame, errorFrame, FrameReader, Type } from "./frames.mjs";
import { readHello } from "./hello.mjs";

export const DEFAULTS = Object.freeze({
  maxMessageSize: 16 * 1024 * 1024,
  handshakeTimeout: 10_000, // ms
  keepaliveInterval: 30_000, // ms: ping a peer silent this long, drop it after three
  writeBufferSize: 4 * 1024 * 1024, // stop reading while more answers than this wait
});

const CLOSE_GRACE = 1000; // ms an ending socket has to flush its last frames

export function openUnix(path) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path });
    const failed = (err) => {
      reject(new JesusError("UNAVAILABLE", `no daemon listens on ${path}: ${err.message}`));
    };
    socket.once("error", failed);
    socket.once("connect", () => {
      socket.off("error", failed);
      resolve(socket);
    });
  });
}

export class FrameConnection {
  #pauses = new Set();
  #held = null;
  #lastHeard = Date.now();
  #lastPing = 0;
  #keepalive = null;
  #handshakeTimer = null;
  #settleReady;

  // `peerRole`: "client" or "server", what the other end plays on this connection. `hooks`:
  // receive(frame) for the frames of calls, ready(peer) after its HELLO, closed(error).
  constructor(socket, options, peerRole, hooks) {
    this.socket = socket;
    this.hooks = hooks;
    this.options = { ...DEFAULTS, ...options };
    this.peerRole = peerRole;
    this.reader = new FrameReader(this.options.maxMessageSize);
    this.peer = null; // the peer's HELLO, once read
    this.closing = false;
    this.closed = false;
    this.failure = null; // why the connection ended, when it was not asked to
    this.ready = new Promise((resolve, reject) => {
      this.#settleReady = { resolve, reject };
    });
    this.ready.catch(() => {}); // read by whoever waits for it; never unhandled
    this.done = new Promise((resolve) => {
      socket.once("close", () => {
        this.#closed();
        resolve();
      });
    });
    socket.on("data", (chunk) => this.#data(chunk));
    socket.on("error", (err) => {
      this.failure ??= new JesusError("UNAVAILABLE", `connection to the daemon broke: ${err.message}`);
    });
    socket.on("drain", () => this.resumeReading("write"));
    this.#handshakeTimer = setTimeout(() => {
      this.failure ??= new JesusError("UNAVAILABLE", "the handshake did not complete in time");
      this.close();
    }, this.options.handshakeTimeout);
    const interval = this.options.keepaliveInterval;
    if (Number.isFinite(interval) && interval > 0) {
      this.#keepalive = setInterval(() => this.#checkAlive(interval), interval / 4);
      this.#keepalive.unref();
    }
  }

  get usable() {
    return !this.closing && !this.closed && this.peer !== null;
  }

  // False once the socket buffers more than it should: the caller may wait for `drained()`.
  write(frame) {
    if (this.closing || this.closed) return true;
    const ok = this.socket.write(frame);
    if (!ok && this.socket.writableLength > this.options.writeBufferSize) {
      this.pauseReading("write");
    }
    return ok;
  }

  drained() {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  pauseReading(reason) {
    this.#pauses.add(reason);
    this.socket.pause();
  }

  resumeReading(reason) {
    this.#pauses.delete(reason);
    if (this.#pauses.size === 0 && !this.closed) this.socket.resume();
  }

  // Close after the frames already written, and after `last` if given.
  close(last) {
    if (this.closing || this.closed) return;
    this.closing = true;
    if (last) this.socket.end(last);
    else this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE).unref();
  }

  // The peer broke the protocol: tell it on stream 0, then close.
  abort(error) {
    this.failure ??= error;
    this.close(errorFrame(0, error));
  }

  // Read no further, from `frame` on, until release(): those frames wait, in order.
  hold(frame) {
    if (this.#held === null) {
      this.#held = [];
      this.pauseReading("hold");
    }
    this.#held.unshift(frame);
  }

  get holding() {
    return this.#held !== null;
  }

  release() {
    const held = this.#held ?? [];
    this.#held = null;
    while (held.length > 0 && !this.closing) {
      if (this.#held !== null) {
        this.#held.push(...held); // held again: the rest waits behind the frame that did it
        return;
      }
      this.#dispatch(held.shift());
    }
    if (this.#held === null) this.resumeReading("hold");
  }

  #data(chunk) {
    this.#lastHeard = Date.now();
    if (this.closing) return;
    let frames;
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.abort(err);
      return;
    }
    for (const frame of frames) {
      if (this.closing) return;
      if (this.#held !== null) this.#held.push(frame);
      else this.#dispatch(frame);
    }
  }

  #dispatch(frame) {
    try {
      this.#frame(frame);
    } catch (err) {
      this.abort(err instanceof JesusError ? err : new ProtocolViolation(String(err?.message)));
    }
  }

  #frame(frame) {
    const { type, stream, payload } = frame;
    if (type === Type.ERROR && stream === 0) {
      // The peer closes the connection: a refusal of the handshake, or a violation of ours.
      this.failure ??= errorFromPayload(payload);
      this.close();
      return;
    }
    if (this.peer === null) {
      if (type !== Type.HELLO) throw new ProtocolViolation("the first frame must be a HELLO");
      if (stream !== 0) throw new ProtocolViolation("a HELLO goes on stream 0");
      this.peer = readHello(payload, this.peerRole);
      clearTimeout(this.#handshakeTimer);
      this.hooks.ready?.(this.peer);
      this.#settleReady.resolve(this.peer);
      return;
    }
    switch (type) {
      case Type.HELLO:
        throw new ProtocolViolation("a second HELLO");
      case Type.PING:
        checkKeepalive(frame);
        this.write(encodeFrame(Type.PONG, 0, 0, payload));
        return;
      case Type.PONG:
        checkKeepalive(frame); // one that answers no PING is ignored
        return;
      default:
        this.hooks.receive(frame);
    }
  }

  #checkAlive(interval) {
    const silent = Date.now() - this.#lastHeard;
    if (silent >= 3 * interval) {
      this.failure ??= new JesusError("UNAVAILABLE", "the daemon has been silent too long");
      this.socket.destroy();
    } else if (silent >= interval && Date.now() - this.#lastPing >= interval && this.peer) {
      this.#lastPing = Date.now();
      this.write(encodeFrame(Type.PING, 0, 0, randomBytes(8)));
    }
  }

  #closed() {
    this.closing = true;
    this.closed = true;
    this.#held = null;
    clearTimeout(this.#handshakeTimer);
    clearInterval(this.#keepalive);
    const error =
      this.failure ?? new JesusError("UNAVAILABLE", "the connection to the daemon was closed");
    if (this.peer === null) {
      this.#settleReady.reject(
        this.failure ?? new JesusError("UNAVAILABLE", "the daemon closed the connection unanswered"),
      );
    }
    this.hooks.closed?.(error);
  }
}

function checkKeepalive({ type, stream, payload }) {
  if (stream !== 0 || payload.length !== 8) {
    const name = type === Type.PING ? "PING" : "PONG";
    throw new ProtocolViolation(`a ${name} goes on stream 0 with exactly 8 bytes`);
  }
}
