// A scripted peer on a unix socket of its own, standing in for the daemon in unit tests.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { encodeFrame, FrameReader, Type } from "../lib/frames.mjs";

export const json = (value) => Buffer.from(JSON.stringify(value));
export const parse = (frame) => JSON.parse(frame.payload.toString("utf8"));

export async function listen() {
  const dir = mkdtempSync(join(tmpdir(), "jesus-node-"));
  const path = join(dir, "peer.sock");
  const waiting = [];
  const server = net.createServer((socket) => waiting.shift()?.(new Peer(socket)));
  await new Promise((resolve) => server.listen(path, resolve));
  return {
    path,
    accept: () => new Promise((resolve) => waiting.push(resolve)),
    close: () => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export class Peer {
  #frames = [];
  #waiter = null;

  constructor(socket) {
    this.socket = socket;
    this.ended = false;
    const reader = new FrameReader(1 << 24);
    socket.on("data", (chunk) => {
      this.#frames.push(...reader.push(chunk));
      this.#wake();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.ended = true;
      this.#wake();
    });
  }

  send(type, stream, payload, flags = 0) {
    this.socket.write(encodeFrame(type, flags, stream, payload));
  }

  hello(info = {}) {
    this.send(Type.HELLO, 0, json({ protocol: "jesus", version: 1, codec: "json", ...info }));
  }

  // The next frame (of `type`, skipping others, when given); null once the socket closed.
  async next(type, timeout = 2000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const i = this.#frames.findIndex((f) => type === undefined || f.type === type);
      if (i >= 0) return this.#frames.splice(i, 1)[0];
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame of type ${type} came`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  // Frames that came within `ms`, taken.
  async settle(ms = 100) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.#frames.splice(0);
  }

  close() {
    this.socket.destroy();
  }

  #wake() {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }
}

export { Type };
