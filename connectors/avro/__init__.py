"""Avro serialization for Shoal: wire formats, schema versions, compatibility.

Two wire formats (:func:`make_serde` picks one by name):

* ``"single-object"``: Avro single-object encoding, ``C3 01`` + schema fingerprint +
  body, resolved against the ``schemas/`` folder (:class:`AvroSerde`);
* ``"confluent"``: schema registry framing, ``00`` + schema id + body
  (:class:`RegistrySerde`), under a subject named by a strategy
  (:mod:`connectors.avro.subjects`), the registry reached as
  :mod:`connectors.avro.registry` configures it.

:class:`MagicByteSerde` reads both (by the first byte) and writes one: what a job's
sources and sinks use. Both decode with writer-to-reader resolution, so data written by
an older version of a schema reads into the current one;
:func:`check_backward_compatible` says whether a schema change allows that.

Only :mod:`connectors.avro._fastavro` imports fastavro.
"""

from connectors.avro.compatibility import check_backward_compatible
from connectors.avro.confluent import (
    CONFLUENT_MAGIC,
    RegistryClient,
    RegistryLookup,
    RegistrySerde,
    schema_id_of,
    value_subject,
)
from connectors.avro.datums import sample_datums
from connectors.avro.factory import CONFLUENT, FORMATS, SINGLE_OBJECT, check_format, make_serde
from connectors.avro.framing import MagicByteSerde
from connectors.avro.registry import RegistryConfig, load_registry_config
from connectors.avro.repository import SchemaEntry, SchemaRepository
from connectors.avro.serde import FramedSerde, Origins, Serde
from connectors.avro.single_object import SINGLE_OBJECT_MAGIC, AvroSerde
from connectors.avro.subjects import (
    DEFAULT_STRATEGY,
    SUBJECT_STRATEGIES,
    check_strategy,
    subject_name,
)

__all__ = [
    "CONFLUENT",
    "CONFLUENT_MAGIC",
    "DEFAULT_STRATEGY",
    "FORMATS",
    "SINGLE_OBJECT",
    "SINGLE_OBJECT_MAGIC",
    "SUBJECT_STRATEGIES",
    "AvroSerde",
    "FramedSerde",
    "MagicByteSerde",
    "Origins",
    "RegistryClient",
    "RegistryConfig",
    "RegistryLookup",
    "RegistrySerde",
    "SchemaEntry",
    "SchemaRepository",
    "Serde",
    "check_backward_compatible",
    "check_format",
    "check_strategy",
    "load_registry_config",
    "make_serde",
    "sample_datums",
    "schema_id_of",
    "subject_name",
    "value_subject",
]
