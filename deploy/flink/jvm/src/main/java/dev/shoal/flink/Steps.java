package dev.shoal.flink;

import java.time.Duration;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.WindowAssigner;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The JVM steps a job of field expressions and built-in aggregates runs on: the
 * decoded records' event-time watermarks, the split of what the decoder refused, and
 * windows of built-in aggregates ({@link Aggregates}) on Flink's own window operator.
 *
 * <p>Flink's window rules are Shoal's here: a window fires when Flink's watermark
 * reaches its end - 1 (Shoal's, one higher, its end); a record is late when every
 * window it falls in ended {@code allowed lateness} or more before Shoal's watermark;
 * results carry the window's end - 1.
 */
public final class Steps {
    private Steps() {}

    /** What {@link AvroFields} refused: {@code Row(raw, error)}. */
    public static final TypeInformation<Row> REFUSED =
            Types.ROW_NAMED(
                    new String[] {"raw", "error"}, Types.PRIMITIVE_ARRAY(Types.BYTE), Types.STRING);

    /** A window's result: {@code Row(key, start, end, result)}, the result a long or,
     * when {@code floating}, a double. */
    public static TypeInformation<Row> result(boolean floating) {
        return Types.ROW_NAMED(
                new String[] {"key", "start", "end", "result"},
                Types.STRING,
                Types.LONG,
                Types.LONG,
                floating ? Types.DOUBLE : Types.LONG);
    }

    /** Decoded records: {@code Row(key, ts, value)}. */
    public static TypeInformation<Row> decoded(boolean floating) {
        return Types.ROW_NAMED(
                new String[] {"key", "ts", "value"},
                Types.STRING,
                Types.LONG,
                floating ? Types.DOUBLE : Types.LONG);
    }

    /** Bounded-disorder watermarks on the decoded records' event time ({@code idleMs}
     * below zero: no idleness). Refused records carry no time and move nothing. */
    public static WatermarkStrategy<Row> watermarks(long maxOutOfOrderMs, long idleMs) {
        WatermarkStrategy<Row> strategy =
                WatermarkStrategy.<Row>forBoundedOutOfOrderness(Duration.ofMillis(maxOutOfOrderMs))
                        .withTimestampAssigner(new EventTime());
        return idleMs < 0 ? strategy : strategy.withIdleness(Duration.ofMillis(idleMs));
    }

    /** The side output of {@link #split}. */
    public static OutputTag<Row> refusedTag(String step) {
        return new OutputTag<>(step + ".refused", REFUSED);
    }

    /** Decoded records as {@code Row(key, ts, value)} on the main output, refused ones
     * as {@code Row(raw, error)} on {@link #refusedTag}, at the input's parallelism. */
    public static SingleOutputStreamOperator<Row> split(
            DataStream<Row> decoded, String step, boolean floating) {
        OutputTag<Row> tag = refusedTag(step);
        return decoded.process(new Split(tag), decoded(floating))
                .name(step + ".split")
                .uid(step + ".split")
                .setParallelism(decoded.getParallelism());
    }

    /** The aggregate {@code kind} ({@link Aggregates#of}) per key and window
     * ({@code slideMs} 0: tumbling) of values that are doubles when {@code floating}.
     * Late records are dropped and counted by Flink's window operator
     * ({@code numLateRecordsDropped}). */
    @SuppressWarnings({"unchecked", "rawtypes"})
    public static SingleOutputStreamOperator<Row> aggregateWindows(
            DataStream<Row> keyed,
            String step,
            long sizeMs,
            long slideMs,
            long allowedLatenessMs,
            String kind,
            boolean floating) {
        WindowAssigner<Object, TimeWindow> assigner =
                slideMs == 0
                        ? TumblingEventTimeWindows.of(Duration.ofMillis(sizeMs))
                        : SlidingEventTimeWindows.of(
                                Duration.ofMillis(sizeMs), Duration.ofMillis(slideMs));
        var windowed =
                keyed.keyBy(new KeyField())
                        .window(assigner)
                        .allowedLateness(Duration.ofMillis(allowedLatenessMs));
        boolean floatingResult = Aggregates.floatingResult(kind, floating);
        TypeInformation<Object> out = (TypeInformation) (floatingResult ? Types.DOUBLE : Types.LONG);
        AggregateFunction aggregate = Aggregates.of(kind, floating);
        TypeInformation accumulator =
                TypeInformation.of(aggregate.createAccumulator().getClass());
        return windowed.aggregate(aggregate, new Emit(), accumulator, out, result(floatingResult))
                .name(step)
                .uid(step);
    }

    /** Window results in batches for Python ({@link Batches.Batcher}). */
    public static SingleOutputStreamOperator<Row> batches(
            DataStream<Row> results, String step, int size, boolean floating) {
        return results.transform(
                        step + ".batches",
                        Batches.batchOf(floating),
                        new Batches.Batcher(size, floating))
                .uid(step + ".batches");
    }

    /** Python's batches of encoded records back to one record each. */
    public static SingleOutputStreamOperator<Row> unbatch(DataStream<Row> batches, String step) {
        return batches.flatMap(new Batches.Unbatch(), Batches.RECORD)
                .name(step + ".records")
                .uid(step + ".records");
    }

    static final class EventTime implements SerializableTimestampAssigner<Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public long extractTimestamp(Row row, long recordTimestamp) {
            return (Long) row.getField(1);
        }
    }

    static final class Split extends ProcessFunction<Row, Row> {
        private static final long serialVersionUID = 1L;
        private final OutputTag<Row> refused;

        Split(OutputTag<Row> refused) {
            this.refused = refused;
        }

        @Override
        public void processElement(Row row, Context ctx, Collector<Row> out) {
            if (row.getField(4) == null) {
                out.collect(Row.of(row.getField(0), row.getField(1), row.getField(2)));
            } else {
                ctx.output(refused, Row.of(row.getField(3), row.getField(4)));
            }
        }
    }

    static final class KeyField implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row row) {
            return (String) row.getField(0);
        }
    }

    /** The one result of a window's aggregate, with its key and bounds. */
    static final class Emit extends ProcessWindowFunction<Object, Row, String, TimeWindow> {
        private static final long serialVersionUID = 1L;

        @Override
        public void process(String key, Context ctx, Iterable<Object> results, Collector<Row> out) {
            for (Object result : results) {
                out.collect(Row.of(key, ctx.window().getStart(), ctx.window().getEnd(), result));
            }
        }
    }
}
