"""Contracts and pictures generated from what services declare: OpenAPI for the http
mapping, AsyncAPI for every method and event, a markdown page, and the service graph.
Each reads `Contract`s, made from Service objects or from registry records."""

from jesus.contracts.model import Contract, from_records, from_services

__all__ = ["Contract", "from_records", "from_services"]
