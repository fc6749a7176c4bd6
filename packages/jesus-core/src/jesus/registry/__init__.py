"""Where services find each other: the seed's "schema manager"."""

from jesus.registry.base import InstanceRecord, MethodRecord, RegistryBackend
from jesus.registry.resolver import Resolver

__all__ = ["InstanceRecord", "MethodRecord", "RegistryBackend", "Resolver"]
