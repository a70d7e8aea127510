package dev.shoal.flink;

import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Window results to Python in batches, and what Python made of them back to records.
 *
 * <p>{@link Batcher} gathers {@code Row(key, start, end, result)} results into one
 * columnar {@code Row(keys, starts, ends, results)} and hands it on when a watermark
 * arrives (before the watermark: every result it fired is in the batch), before a
 * checkpoint barrier (the barrier never overtakes a result), at the end of the input
 * and at {@code size} results. So Python is called once per batch, not per window.
 * {@link Unbatch} turns Python's {@code Row(keys, values, times)} of encoded records
 * back into one {@code Row(k, v, t)} per record for the Kafka sink.
 */
public final class Batches {
    private Batches() {}

    /** A batch of window results, as columns; the results longs, or doubles when
     * {@code floating} (with nulls for no value: a mean of nothing). */
    public static TypeInformation<Row> batchOf(boolean floating) {
        return Types.ROW_NAMED(
                new String[] {"keys", "starts", "ends", "results"},
                Types.OBJECT_ARRAY(Types.STRING),
                Types.PRIMITIVE_ARRAY(Types.LONG),
                Types.PRIMITIVE_ARRAY(Types.LONG),
                floating ? Types.OBJECT_ARRAY(Types.DOUBLE) : Types.OBJECT_ARRAY(Types.LONG));
    }

    /** One encoded record, as the Kafka sink takes it. */
    public static final TypeInformation<Row> RECORD =
            Types.ROW_NAMED(
                    new String[] {"k", "v", "t"},
                    Types.PRIMITIVE_ARRAY(Types.BYTE),
                    Types.PRIMITIVE_ARRAY(Types.BYTE),
                    Types.LONG);

    /** Gathers window results into batches of at most {@code size}. */
    public static final class Batcher extends AbstractStreamOperator<Row>
            implements OneInputStreamOperator<Row, Row>, BoundedOneInput {
        private static final long serialVersionUID = 1L;
        private final int size;
        private final boolean floating;
        private transient List<Row> rows;

        public Batcher(int size, boolean floating) {
            this.size = size;
            this.floating = floating;
        }

        @Override
        public void open() throws Exception {
            super.open();
            rows = new ArrayList<>(size);
        }

        @Override
        public void processElement(StreamRecord<Row> element) {
            rows.add(element.getValue());
            if (rows.size() >= size) {
                flush();
            }
        }

        @Override
        public void processWatermark(Watermark mark) throws Exception {
            flush();
            super.processWatermark(mark);
        }

        @Override
        public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
            flush();
            super.prepareSnapshotPreBarrier(checkpointId);
        }

        @Override
        public void endInput() {
            flush();
        }

        @Override
        public void finish() throws Exception {
            flush();
            super.finish();
        }

        private void flush() {
            int n = rows.size();
            if (n == 0) {
                return;
            }
            String[] keys = new String[n];
            long[] starts = new long[n];
            long[] ends = new long[n];
            Object[] results = floating ? new Double[n] : new Long[n];
            for (int i = 0; i < n; i++) {
                Row row = rows.get(i);
                keys[i] = (String) row.getField(0);
                starts[i] = (Long) row.getField(1);
                ends[i] = (Long) row.getField(2);
                results[i] = row.getField(3);
            }
            rows.clear();
            output.collect(new StreamRecord<>(Row.of(keys, starts, ends, results)));
        }
    }

    /** A batch of encoded records -> one record each. Python's columns arrive as
     * arrays or as lists, depending on PyFlink's execution mode. */
    public static final class Unbatch implements FlatMapFunction<Row, Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public void flatMap(Row batch, Collector<Row> out) {
            List<?> keys = column(batch.getField(0));
            List<?> values = column(batch.getField(1));
            List<?> times = column(batch.getField(2));
            for (int i = 0; i < values.size(); i++) {
                out.collect(Row.of(keys.get(i), values.get(i), ((Number) times.get(i)).longValue()));
            }
        }

        private static List<?> column(Object field) {
            if (field instanceof List<?> list) {
                return list;
            }
            if (field instanceof long[] longs) {
                return java.util.Arrays.stream(longs).boxed().toList();
            }
            return java.util.Arrays.asList((Object[]) field);
        }
    }
}
