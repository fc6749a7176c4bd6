// Services offered through the daemon, offered again whenever the connection is lost (the
// daemon restarted), until close().

import { EventEmitter } from "node:events";

import { openUnix } from "./connection.mjs";
import { ServedConnection } from "./serving.mjs";

// Between attempts to reach a daemon that is gone: doubling up to the last, in ms.
const RETRY_FIRST = 50;
const RETRY_MAX = 2000;

// Resolves with a Provider once the daemon registered the services; rejects with its
// refusal (a JesusError, e.g. INVALID_REQUEST naming the key at fault) or UNAVAILABLE.
export async function provide(socketPath, declaration, handlers, options = {}) {
  const provider = new Provider(socketPath, declaration, servedMethods(declaration, handlers), options);
  await provider.started;
  return provider;
}

export class Provider extends EventEmitter {
  #closing = false;
  #served = null;
  #sleeping = null;
  #drainTimeout = 0;

  constructor(socketPath, declaration, methods, options) {
    super();
    this.socketPath = socketPath;
    this.declaration = declaration;
    this.methods = methods;
    this.options = options;
    this.log = options.log ?? ((message) => console.warn(`jesus: ${message}`));
    this.started = new Promise((resolve, reject) => {
      this.stopped = this.#run(resolve, reject);
    });
  }

  get connected() {
    return this.#served !== null;
  }

  // Stop offering: the daemon is told to send no more calls, those in flight are answered
  // (for at most `drainTimeout` ms), then the connection closes and the services go.
  async close({ drainTimeout = 10_000 } = {}) {
    this.#closing = true;
    this.#drainTimeout = drainTimeout;
    this.#sleeping?.();
    await this.#served?.shutdown(drainTimeout);
    await this.stopped;
  }

  async #run(resolve, reject) {
    let started = false;
    let delay = RETRY_FIRST;
    while (!this.#closing) {
      let served = null;
      try {
        const socket = await openUnix(this.socketPath);
        served = new ServedConnection(socket, {
          declaration: this.declaration,
          methods: this.methods,
          options: this.options,
          log: this.log,
        });
        await served.ready;
      } catch (err) {
        served = null;
        if (!started) {
          reject(err);
          return;
        }
        this.log(`could not offer the services again through ${this.socketPath}: ${err.message}`);
        this.emit("retry", err);
      }
      if (served !== null && this.#closing) {
        await served.shutdown(this.#drainTimeout); // close() came while it connected
      } else if (served !== null) {
        this.#served = served;
        delay = RETRY_FIRST;
        if (!started) {
          started = true;
          resolve(this);
        } else {
          this.emit("connected");
        }
        await served.done;
        this.#served = null;
        if (this.#closing) return;
        this.log(`lost the daemon at ${this.socketPath}, reconnecting`);
        this.emit("disconnected", served.closedBy);
      }
      if (this.#closing) break;
      await new Promise((wake) => {
        const timer = setTimeout(wake, delay);
        this.#sleeping = () => {
          clearTimeout(timer);
          wake();
        };
      });
      this.#sleeping = null;
      delay = Math.min(delay * 2, RETRY_MAX);
    }
    if (!started) reject(new Error("closed before the daemon answered"));
  }
}

// "service.method" -> {handler, mode} for each method and listener the declaration names;
// a declared one without a handler, or a handler declared nowhere, is a mistake told now.
function servedMethods(declaration, handlers) {
  const methods = Object.create(null);
  const services = Array.isArray(declaration) ? declaration : [declaration];
  for (const service of services) {
    if (service === null || typeof service !== "object" || typeof service.name !== "string") {
      continue; // the daemon names what is wrong with it
    }
    for (const [name, spec] of Object.entries(objectOr(service.methods))) {
      methods[`${service.name}.${name}`] = { mode: spec?.mode ?? "response" };
    }
    for (const pattern of Object.keys(objectOr(service.listens))) {
      methods[`${service.name}.~${pattern}`] = { mode: "listener" };
    }
  }
  for (const [target, handler] of Object.entries(handlers)) {
    if (!(target in methods)) {
      throw new TypeError(`handlers[${JSON.stringify(target)}] is for nothing the declaration offers`);
    }
    if (typeof handler !== "function") {
      throw new TypeError(`handlers[${JSON.stringify(target)}] is not a function`);
    }
    methods[target].handler = handler;
  }
  const missing = Object.keys(methods).filter((target) => methods[target].handler === undefined);
  if (missing.length > 0) throw new TypeError(`no handler for ${missing.join(", ")}`);
  return methods;
}

function objectOr(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? value : {};
}
