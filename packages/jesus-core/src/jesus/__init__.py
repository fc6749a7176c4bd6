"""jesus: RPC and events between services, each message on the channel it deserves."""

from jesus.channel import ChannelSpec
from jesus.config import Config
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
    PermissionDenied,
    ProtocolError,
    RegistryError,
    RegistryLimit,
    RemoteFailure,
    RemoteProtocolError,
    ResourceExhausted,
    SchemaError,
    SealRefused,
    ServiceNotFound,
    TooLarge,
    Unavailable,
    UnknownMethod,
    WrongChannel,
)
from jesus.hookspecs import hookimpl
from jesus.limits import Limits
from jesus.messages import Meta, Msg, ResponseMode
from jesus.middleware import CallInfo, Middleware
from jesus.routing.health import Ejection
from jesus.routing.retries import Retry, RetryBudget
from jesus.runtime.client import Client
from jesus.runtime.context import current_call, current_caller
from jesus.runtime.node import Node, serve
from jesus.runtime.service import Service
from jesus.security.caller import Caller
from jesus.security.credentials import Credentials

__version__ = "0.1.0"

__all__ = [
    "BadFrame",
    "CallError",
    "CallInfo",
    "Caller",
    "Cancelled",
    "ChannelNotInstalled",
    "ChannelSpec",
    "Client",
    "Config",
    "ConfigurationError",
    "Credentials",
    "DeadlineExceeded",
    "Ejection",
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
    "PermissionDenied",
    "ProtocolError",
    "RegistryError",
    "RegistryLimit",
    "RemoteFailure",
    "RemoteProtocolError",
    "ResourceExhausted",
    "ResponseMode",
    "Retry",
    "RetryBudget",
    "SchemaError",
    "SealRefused",
    "Service",
    "ServiceNotFound",
    "TooLarge",
    "Unavailable",
    "UnknownMethod",
    "WrongChannel",
    "__version__",
    "current_call",
    "current_caller",
    "hookimpl",
    "serve",
]
