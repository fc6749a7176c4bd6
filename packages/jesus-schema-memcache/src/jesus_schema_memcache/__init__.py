"""jesus-schema-memcache: instance records and their indexes on memcached."""

from jesus_schema_memcache.backend import MemcacheRegistry

__all__ = ["MemcacheRegistry"]
