"""The names jesus-otel emits: the OpenTelemetry semantic conventions for RPC (as they stand
after semconv 1.37: `rpc.system.name`, a fully qualified `rpc.method`, `rpc.status_code`,
`rpc.*.call.duration` in seconds) and for messaging, plus a few of jesus's own under `jesus.`.
"""

from __future__ import annotations

SYSTEM = "jesus"

# --- attributes
RPC_SYSTEM_NAME = "rpc.system.name"
RPC_METHOD = "rpc.method"  # "service/method", the conventions' fully qualified form
RPC_STATUS_CODE = "rpc.status_code"  # "OK" or a jesus error code ("INVALID_REQUEST", ...)
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
NETWORK_PEER_ADDRESS = "network.peer.address"

MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION = "messaging.destination.name"  # the event's name
MESSAGING_TEMPLATE = "messaging.destination.template"  # the listener's pattern ("user.*")
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_GROUP = "messaging.consumer.group.name"
MESSAGING_CONVERSATION = "messaging.message.conversation_id"  # the corrid

JESUS_CHANNEL = "jesus.channel"  # the channel spec, e.g. "tcp+msgpack"
JESUS_CORRID = "jesus.corrid"
JESUS_MODE = "jesus.mode"  # the response mode
JESUS_USERID = "jesus.userid"

# --- values
OK = "OK"
CANCELLED = "CANCELLED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
REMOTE_FAILURE = "REMOTE_FAILURE"
PUBLISH = "publish"  # messaging.operation.name of an emit's delivery
SEND = "send"  # ... and its messaging.operation.type
PROCESS = "process"  # a listener's handling of an event, both

# --- metrics
RPC_CLIENT_DURATION = "rpc.client.call.duration"
RPC_SERVER_DURATION = "rpc.server.call.duration"
MESSAGING_CLIENT_DURATION = "messaging.client.operation.duration"
MESSAGING_PROCESS_DURATION = "messaging.process.duration"
MESSAGING_SENT = "messaging.client.sent.messages"
MESSAGING_CONSUMED = "messaging.client.consumed.messages"
# jesus's own: the conventions define none for these.
CLIENT_ACTIVE = "jesus.client.active_calls"
SERVER_ACTIVE = "jesus.server.active_calls"
CLIENT_ERRORS = "jesus.client.errors"
SERVER_ERRORS = "jesus.server.errors"
SERVER_REQUEST_SIZE = "jesus.server.request.size"
SERVER_RESPONSE_SIZE = "jesus.server.response.size"
CLIENT_REQUEST_SIZE = "jesus.client.request.size"
CLIENT_RESPONSE_SIZE = "jesus.client.response.size"

# The conventions' advice for the call duration histograms (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
