"""Avro object container files (the savepoint's state files), behind one small API.

A container file carries its writer schema in its header, so any Avro reader
reads it; giving a reader schema resolves every record into it by the Avro rules.
"""

from __future__ import annotations

from connectors.avro._fastavro import read_container, write_container

__all__ = ["read_container", "write_container"]
