// Errors as PROTOCOL.md "Errors" lists them: a code, a message, the call's corrid, details.

export const CODES = Object.freeze([
  "UNKNOWN_METHOD",
  "INVALID_REQUEST",
  "INVALID_RESPONSE",
  "DEADLINE_EXCEEDED",
  "UNAVAILABLE",
  "WRONG_CHANNEL",
  "PERMISSION_DENIED",
  "SEAL_REFUSED",
  "TOO_LARGE",
  "CANCELLED",
  "PROTOCOL_ERROR",
  "REMOTE_FAILURE",
]);
const KNOWN = new Set(CODES);

export class JesusError extends Error {
  constructor(code, message, { corrid, details } = {}) {
    // An unknown code is a remote failure; the message keeps what the peer said.
    const known = KNOWN.has(code);
    super(known ? message : `${code}: ${message}`);
    this.name = "JesusError";
    this.code = known ? code : "REMOTE_FAILURE";
    if (corrid !== undefined) this.corrid = corrid;
    if (details !== undefined) this.details = details;
  }

  // The ERROR frame's JSON object.
  toJSON() {
    const out = { code: this.code, message: this.message };
    if (this.corrid !== undefined) out.corrid = this.corrid;
    if (this.details !== undefined) out.details = this.details;
    return out;
  }
}

// A peer broke the protocol: the connection is closed with an ERROR on stream 0.
export class ProtocolViolation extends JesusError {
  constructor(message) {
    super("PROTOCOL_ERROR", message);
  }
}

export class TooLarge extends JesusError {
  constructor(message) {
    super("TOO_LARGE", message);
  }
}

// The JesusError an ERROR payload carries.
export function errorFromPayload(payload) {
  let value;
  try {
    value = JSON.parse(payload.toString("utf8"));
  } catch {
    return new JesusError("PROTOCOL_ERROR", "the peer sent an ERROR that is not JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return new JesusError("PROTOCOL_ERROR", "the peer sent an ERROR that is not a JSON object");
  }
  const code = typeof value.code === "string" ? value.code : "REMOTE_FAILURE";
  const message = typeof value.message === "string" ? value.message : "(no message)";
  const corrid = typeof value.corrid === "string" ? value.corrid : undefined;
  return new JesusError(code, message, { corrid, details: value.details });
}

// What a handler's exception tells the caller: a JesusError (or any error whose `code` is a
// protocol code) as itself, anything else as REMOTE_FAILURE naming the exception.
export function errorOfThrown(err, corrid) {
  if (err !== null && typeof err === "object" && KNOWN.has(err.code)) {
    const message = typeof err.message === "string" ? err.message : String(err);
    return new JesusError(err.code, message, { corrid, details: jsonable(err.details) });
  }
  const name = err?.constructor?.name ?? typeof err;
  const message = err instanceof Error ? err.message : String(err);
  return new JesusError("REMOTE_FAILURE", `${name}: ${message}`, { corrid });
}

function jsonable(value) {
  if (value === undefined) return undefined;
  try {
    JSON.stringify(value);
    return value;
  } catch {
    return String(value);
  }
}
