package dev.shoal.flink;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.Decoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.util.Utf8;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;

/**
 * Kafka values in Avro single-object encoding ({@code C3 01}, the writer schema's
 * CRC-64-AVRO fingerprint little-endian, the body) to {@code Row(key, ts, value, raw,
 * error)}: the key field, the event-time field and the field an aggregate reads
 * ({@code value}: a long, or a double when {@code floating}; null without one) of the
 * record read with the reader schema.
 *
 * <p>A record it cannot read (framing, unknown writer, a body that does not decode in
 * full, a string that is not UTF-8, an event time that is missing or out of bounds)
 * comes out with its bytes and the reason ({@code raw}, {@code error}), for the Python
 * decoder to dead-letter exactly as the rest of the engine does. It never refuses what
 * the Python decoder reads.
 */
public final class AvroFields implements DeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    /** Bounds of no event-time check. */
    public static final long NONE = Long.MIN_VALUE;

    private final String readerSchema;
    private final String[] writerSchemas;
    private final String keyField;
    private final String timeField;
    private final String valueField;
    private final boolean floating;
    private final long minValidMs;
    private final long maxFutureMs;
    private final boolean clamp;

    private transient Map<Long, GenericDatumReader<GenericRecord>> readers;
    private transient BinaryDecoder decoder;
    private transient GenericRecord reuse;

    public AvroFields(
            String readerSchema,
            String[] writerSchemas,
            String keyField,
            String timeField,
            String valueField,
            boolean floating,
            long minValidMs,
            long maxFutureMs,
            boolean clamp) {
        this.readerSchema = readerSchema;
        this.writerSchemas = writerSchemas;
        this.keyField = keyField;
        this.timeField = timeField;
        this.valueField = valueField;
        this.floating = floating;
        this.minValidMs = minValidMs;
        this.maxFutureMs = maxFutureMs;
        this.clamp = clamp;
    }

    private void start() {
        Schema reader = new Schema.Parser().parse(readerSchema);
        readers = new HashMap<>();
        for (String text : writerSchemas) {
            Schema writer = new Schema.Parser().parse(text);
            long fingerprint = SchemaNormalization.parsingFingerprint64(writer);
            readers.put(fingerprint, new StrictReader(writer, reader));
        }
    }

    @Override
    public void open(InitializationContext context) {
        start();
    }

    @Override
    public Row deserialize(byte[] message) {
        if (readers == null) {
            start();
        }
        if (message == null) {
            return failed(null, "a record without a value");
        }
        if (message.length < 10 || message[0] != (byte) 0xC3 || message[1] != (byte) 0x01) {
            return failed(message, "not Avro single-object framing");
        }
        long fingerprint = ByteBuffer.wrap(message, 2, 8)
                .order(java.nio.ByteOrder.LITTLE_ENDIAN)
                .getLong();
        GenericDatumReader<GenericRecord> reader = readers.get(fingerprint);
        if (reader == null) {
            return failed(message, "unknown writer schema");
        }
        GenericRecord record;
        try {
            decoder = DecoderFactory.get().binaryDecoder(message, 10, message.length - 10, decoder);
            record = reader.read(reuse, decoder);
            if (!decoder.isEnd()) {
                return failed(message, "bytes after the Avro body");
            }
        } catch (IOException | RuntimeException exc) {
            return failed(message, "Avro body: " + exc);
        }
        reuse = record;
        Object key = record.get(keyField);
        if (!(key instanceof String)) {
            return failed(message, "key field is not a string");
        }
        Object time = record.get(timeField);
        if (!(time instanceof Long) && !(time instanceof Integer)) {
            return failed(message, "event time is not an integer");
        }
        long ts = ((Number) time).longValue();
        long hi = maxFutureMs == NONE ? (1L << 62) : System.currentTimeMillis() + maxFutureMs;
        if (ts > hi && clamp) {
            ts = hi;
        }
        if (ts < minValidMs || ts > hi) {
            return failed(message, "event time out of bounds");
        }
        Object value = null;
        if (valueField != null) {
            Object read = record.get(valueField);
            if (!(read instanceof Number number)) {
                return failed(message, "the aggregated field is not a number");
            }
            value = floating ? (Object) number.doubleValue() : (Object) number.longValue();
        }
        return Row.of(key, ts, value, null, null);
    }

    private static Row failed(byte[] message, String why) {
        return Row.of(null, Long.MIN_VALUE, null, message, why);
    }

    @Override
    public boolean isEndOfStream(Row next) {
        return false;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW_NAMED(
                new String[] {"key", "ts", "value", "raw", "error"},
                Types.STRING,
                Types.LONG,
                floating ? Types.DOUBLE : Types.LONG,
                Types.PRIMITIVE_ARRAY(Types.BYTE),
                Types.STRING);
    }

    /** Reads every string as strict UTF-8 (a malformed one fails the record), as a
     * Java String. */
    static final class StrictReader extends GenericDatumReader<GenericRecord> {
        StrictReader(Schema writer, Schema reader) {
            super(writer, reader, slowData());
        }

        /** Avro's fast reader reads strings on its own, past {@link #readString}. */
        private static GenericData slowData() {
            GenericData data = new GenericData();
            data.setFastReaderEnabled(false);
            return data;
        }

        @Override
        protected Object readString(Object old, Schema expected, Decoder in) throws IOException {
            return strict(in.readString(old instanceof Utf8 ? (Utf8) old : null));
        }

        @Override
        protected Object readString(Object old, Decoder in) throws IOException {
            return strict(in.readString(old instanceof Utf8 ? (Utf8) old : null));
        }

        private static String strict(Utf8 text) throws IOException {
            try {
                return StandardCharsets.UTF_8
                        .newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(ByteBuffer.wrap(text.getBytes(), 0, text.getByteLength()))
                        .toString();
            } catch (CharacterCodingException exc) {
                throw new IOException("a string that is not UTF-8", exc);
            }
        }
    }
}
