// The `json` codec (UTF-8 JSON, RFC 8259) and the `none` compression: the channel this
// library speaks to the daemon, which re-encodes for each service's own channel.

import { JesusError } from "./errors.mjs";

export const CODEC = "json";
export const COMPRESSION = "none";

const utf8 = new TextDecoder("utf-8", { fatal: true });

// Buffer of `value`; `undefined` travels as null. Throws for what JSON cannot carry.
export function encode(value) {
  const text = JSON.stringify(value === undefined ? null : value);
  if (text === undefined) throw new TypeError(`${typeof value} cannot be encoded as JSON`);
  return Buffer.from(text, "utf8");
}

// The value of a payload; a JesusError PROTOCOL_ERROR when it is not UTF-8 JSON.
export function decode(payload, what = "payload") {
  try {
    return JSON.parse(utf8.decode(payload));
  } catch (err) {
    throw new JesusError("PROTOCOL_ERROR", `the ${what} is not UTF-8 JSON: ${err.message}`);
  }
}
