// jesus for Node.js: call, stream and emit through the node daemon, and offer services
// through it (PROTOCOL.md, "Node daemon"). Node's standard library alone.

export { connect, Client, newCorrid } from "./lib/client.mjs";
export { provide, Provider } from "./lib/provider.mjs";
export { JesusError, CODES } from "./lib/errors.mjs";
