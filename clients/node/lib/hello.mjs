// HELLO payloads (PROTOCOL.md, "Handshake"): what this end says, and the checks of the peer's.

import { CODEC, COMPRESSION, decode } from "./codec.mjs";
import { ProtocolViolation } from "./errors.mjs";
import { encodeFrame, Type } from "./frames.mjs";

export const VERSION = 1;
export const CAPABILITIES = Object.freeze(["stream", "cancel", "credit", "ping", "goaway", "items"]);

// The integer keys each side's HELLO may carry; the other side's keys are ignored.
const CLIENT_INTEGERS = ["version", "max_message_size", "stream_window", "stream_window_bytes"];
const SERVER_INTEGERS = ["version", "max_message_size", "max_inflight_calls"];

export function helloFrame(info) {
  return encodeFrame(
    Type.HELLO,
    0,
    0,
    Buffer.from(
      JSON.stringify({
        protocol: "jesus",
        version: VERSION,
        codec: CODEC,
        compression: COMPRESSION,
        capabilities: [...CAPABILITIES],
        ...info,
      }),
      "utf8",
    ),
  );
}

// The peer's HELLO, checked; `peer` is the role the peer plays: "client" or "server".
export function readHello(payload, peer) {
  const info = decode(payload, "HELLO");
  if (info === null || typeof info !== "object" || Array.isArray(info)) {
    throw new ProtocolViolation("a HELLO is a JSON object");
  }
  if (info.protocol !== "jesus") {
    throw new ProtocolViolation(`HELLO protocol is ${JSON.stringify(info.protocol)}, not "jesus"`);
  }
  const required = peer === "client" ? ["version", "codec"] : ["version"];
  for (const key of required) {
    if (!(key in info)) throw new ProtocolViolation(`HELLO lacks ${key}`);
  }
  for (const key of peer === "client" ? CLIENT_INTEGERS : SERVER_INTEGERS) {
    if (key in info && !(Number.isSafeInteger(info[key]) && info[key] >= 1)) {
      throw new ProtocolViolation(`HELLO ${key} must be an integer >= 1`);
    }
  }
  if (peer === "server" && info.version !== VERSION) {
    throw new ProtocolViolation(`the server answered version ${info.version}; this end speaks 1`);
  }
  const capabilities = Array.isArray(info.capabilities) ? info.capabilities : [];
  return { ...info, capabilities: new Set(capabilities.filter((c) => typeof c === "string")) };
}
