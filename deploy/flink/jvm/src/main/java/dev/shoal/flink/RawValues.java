package dev.shoal.flink;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;

/**
 * Kafka values as they are, in {@code Row(raw)}: a record without a value (a
 * tombstone) comes out too, with {@code raw} null, for the decoder to dead-letter.
 * (A byte-array schema returns null for it, and Flink's Kafka source drops what a
 * schema returns as null.)
 */
public final class RawValues implements DeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public Row deserialize(byte[] message) {
        return Row.of((Object) message);
    }

    @Override
    public boolean isEndOfStream(Row next) {
        return false;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW_NAMED(new String[] {"raw"}, Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
