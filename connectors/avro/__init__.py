"""Avro serialization for Shoal: wire formats, schema versions, compatibility.

Two wire formats (:func:`make_serde` picks one by name):

* ``"avro"``: single-object encoding, ``C3 01`` + schema fingerprint + body,
  resolved against the ``schemas/`` folder (:class:`AvroSerde`);
* ``"confluent"``: schema registry framing, ``00`` + schema id + body
  (:class:`RegistrySerde`).

Both decode with writer-to-reader resolution, so data written by an older
version of a schema reads into the current one; :func:`check_backward_compatible`
says whether a schema change allows that.

Only :mod:`connectors.avro._fastavro` imports fastavro.
"""

from connectors.avro.compatibility import check_backward_compatible
from connectors.avro.confluent import RegistryClient, RegistrySerde, value_subject
from connectors.avro.datums import sample_datums
from connectors.avro.factory import FORMATS, make_serde
from connectors.avro.repository import SchemaEntry, SchemaRepository
from connectors.avro.serde import FramedSerde, Origins, Serde
from connectors.avro.single_object import SINGLE_OBJECT_MAGIC, AvroSerde

__all__ = [
    "FORMATS",
    "SINGLE_OBJECT_MAGIC",
    "AvroSerde",
    "FramedSerde",
    "Origins",
    "RegistryClient",
    "RegistrySerde",
    "SchemaEntry",
    "SchemaRepository",
    "Serde",
    "check_backward_compatible",
    "make_serde",
    "sample_datums",
    "value_subject",
]
