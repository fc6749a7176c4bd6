"""jesus: RPC and events between services, each message on the channel it deserves."""

from jesus.channel import ChannelSpec
from jesus.errors import (
    BadFrame,
    CallError,
    Cancelled,
    ChannelNotInstalled,
    ConfigurationError,
    DeadlineExceeded,
    EventNotDelivered,
    IncompatibleSchemas,
    InvalidRequest,
    InvalidResponse,
    JesusError,
    LocalProtocolError,
    ProtocolError,
    RegistryError,
    RemoteFailure,
    RemoteProtocolError,
    SchemaError,
    ServiceNotFound,
    TooLarge,
    Unavailable,
    UnknownMethod,
)
from jesus.hookspecs import hookimpl
from jesus.limits import Limits
from jesus.messages import Meta, Msg, ResponseMode
from jesus.middleware import CallInfo, Middleware
from jesus.runtime.client import Client
from jesus.runtime.context import current_call
from jesus.runtime.node import Node, serve
from jesus.runtime.service import Service

__version__ = "0.1.0"

__all__ = [
    "BadFrame",
    "CallError",
    "CallInfo",
    "Cancelled",
    "ChannelNotInstalled",
    "ChannelSpec",
    "Client",
    "ConfigurationError",
    "DeadlineExceeded",
    "EventNotDelivered",
    "IncompatibleSchemas",
    "InvalidRequest",
    "InvalidResponse",
    "JesusError",
    "Limits",
    "LocalProtocolError",
    "Meta",
    "Middleware",
    "Msg",
    "Node",
    "ProtocolError",
    "RegistryError",
    "RemoteFailure",
    "RemoteProtocolError",
    "ResponseMode",
    "SchemaError",
    "Service",
    "ServiceNotFound",
    "TooLarge",
    "Unavailable",
    "UnknownMethod",
    "__version__",
    "current_call",
    "hookimpl",
    "serve",
]
