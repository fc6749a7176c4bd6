// A stream's items as the consumer takes them (PROTOCOL.md, "Streams and flow control"):
// credit goes back once the consumer has taken half the window, so a slow consumer bounds
// what the daemon sends to the window.

import { JesusError } from "./errors.mjs";
import { encodeCredit } from "./frames.mjs";

export class ClientStream {
  #client;
  #queue = []; // {value, bytes}: a frame's bytes count with its first item
  #waiter = null;
  #end = null; // {error} or {done: true}, once no more items will come
  #allowed; // items the daemon may still send
  #taken = 0; // items and bytes taken since credit was last given
  #takenBytes = 0;
  #timer = null;
  #unwatch = null;

  constructor(client, target, corrid, { window, windowBytes }) {
    this.#client = client;
    this.target = target;
    this.corrid = corrid;
    this.window = window;
    this.windowBytes = windowBytes; // undefined: credit counts items alone
    this.#allowed = window;
    this.sid = 0;
  }

  watch(timeout, signal, deadlineError) {
    if (timeout != null) {
      this.#timer = setTimeout(() => {
        this.#client.abandon(this.sid, this);
        this.fail(deadlineError());
      }, timeout);
    }
    if (signal) {
      const onAbort = () => {
        this.#client.abandon(this.sid, this);
        this.fail(new JesusError("CANCELLED", `${this.target} was cancelled`, { corrid: this.corrid }));
      };
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#unwatch = () => signal.removeEventListener("abort", onAbort);
    }
  }

  // The client forgot this stream: no timer or signal may act on it any more.
  finish() {
    clearTimeout(this.#timer);
    this.#unwatch?.();
  }

  push(values, bytes) {
    if (values.length > this.#allowed) {
      throw new JesusError("PROTOCOL_ERROR", `the daemon sent items of ${this.target} without credit`);
    }
    this.#allowed -= values.length;
    values.forEach((value, i) => this.#queue.push({ value, bytes: i === 0 ? bytes : 0 }));
    this.#wake();
  }

  end() {
    this.#end ??= { done: true };
    this.finish();
    this.#wake();
  }

  fail(error) {
    this.#end ??= { error };
    this.finish();
    this.#wake();
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  async next() {
    while (this.#queue.length === 0 && this.#end === null) {
      await new Promise((resolve) => {
        this.#waiter = resolve;
      });
    }
    if (this.#queue.length > 0) {
      const { value, bytes } = this.#queue.shift();
      this.#took(bytes);
      return { value, done: false };
    }
    const { error } = this.#end;
    if (error) {
      this.#end = { done: true }; // thrown once, then done
      throw error;
    }
    return { value: undefined, done: true };
  }

  // Leaving early (break, return, throw in the loop) cancels the stream.
  async return() {
    if (this.#end === null) {
      this.#client.abandon(this.sid, this);
      this.#end = { done: true };
      this.finish();
    }
    this.#queue.length = 0;
    return { value: undefined, done: true };
  }

  #took(bytes) {
    this.#taken += 1;
    this.#takenBytes += bytes;
    if (this.#end !== null) return;
    const half = this.#taken >= this.window / 2;
    const halfBytes = this.windowBytes !== undefined && this.#takenBytes >= this.windowBytes / 2;
    if (half || halfBytes) {
      const credit = encodeCredit(
        this.sid,
        this.#taken,
        this.windowBytes === undefined ? undefined : this.#takenBytes,
      );
      this.#allowed += this.#taken;
      this.#taken = 0;
      this.#takenBytes = 0;
      this.#client.write(credit);
    }
  }

  #wake() {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }
}
