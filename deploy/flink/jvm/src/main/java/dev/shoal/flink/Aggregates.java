package dev.shoal.flink;

import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * Shoal's built-in aggregates ({@code runtime.api.aggregates}) over the {@code value}
 * of decoded {@code Row(key, ts, value)} records, with the same results: {@code Count}
 * a long; {@code Sum} and {@code Mean} doubles (Shoal adds {@code float(x)} to 0, and
 * to {@code 0.0}); {@code Min} and {@code Max} the field's own type (a long or a
 * double), the first of equal values, and a NaN neither replaces nor is replaced
 * unless it comes first (comparisons with NaN are false, in both languages).
 */
public final class Aggregates {
    private Aggregates() {}

    /** The aggregate named {@code kind} ({@code count, sum, mean, min, max}) over
     * longs or, when {@code floating}, doubles. */
    public static AggregateFunction<Row, ?, ?> of(String kind, boolean floating) {
        switch (kind) {
            case "count":
                return new Count();
            case "sum":
                return new Sum();
            case "mean":
                return new Mean();
            case "min":
                return floating ? new Extreme<Double>(true) : new Extreme<Long>(true);
            case "max":
                return floating ? new Extreme<Double>(false) : new Extreme<Long>(false);
            default:
                throw new IllegalArgumentException("no JVM aggregate " + kind);
        }
    }

    /** Whether the result of {@code kind} over such values is a double. */
    public static boolean floatingResult(String kind, boolean floating) {
        return kind.equals("sum") || kind.equals("mean") || (floating && !kind.equals("count"));
    }

    static final class Count implements AggregateFunction<Row, Long, Long> {
        private static final long serialVersionUID = 1L;

        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(Row value, Long acc) {
            return acc + 1;
        }

        @Override
        public Long getResult(Long acc) {
            return acc;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    static final class Sum implements AggregateFunction<Row, Double, Double> {
        private static final long serialVersionUID = 1L;

        @Override
        public Double createAccumulator() {
            return 0.0;
        }

        @Override
        public Double add(Row value, Double acc) {
            return acc + ((Number) value.getField(2)).doubleValue();
        }

        @Override
        public Double getResult(Double acc) {
            return acc;
        }

        @Override
        public Double merge(Double a, Double b) {
            return a + b;
        }
    }

    static final class Mean implements AggregateFunction<Row, double[], Double> {
        private static final long serialVersionUID = 1L;

        @Override
        public double[] createAccumulator() {
            return new double[] {0.0, 0.0};
        }

        @Override
        public double[] add(Row value, double[] acc) {
            acc[0] += ((Number) value.getField(2)).doubleValue();
            acc[1] += 1;
            return acc;
        }

        @Override
        public Double getResult(double[] acc) {
            return acc[1] == 0 ? null : acc[0] / acc[1];
        }

        @Override
        public double[] merge(double[] a, double[] b) {
            return new double[] {a[0] + b[0], a[1] + b[1]};
        }
    }

    /** Min ({@code smallest}) or max of longs or doubles; null for no records. */
    static final class Extreme<T extends Number & Comparable<T>>
            implements AggregateFunction<Row, Object[], T> {
        private static final long serialVersionUID = 1L;
        private final boolean smallest;

        Extreme(boolean smallest) {
            this.smallest = smallest;
        }

        @Override
        public Object[] createAccumulator() {
            return new Object[1];
        }

        @Override
        @SuppressWarnings("unchecked")
        public Object[] add(Row value, Object[] acc) {
            Number v = (Number) value.getField(2);
            if (acc[0] == null || better(v, (Number) acc[0])) {
                acc[0] = v;
            }
            return acc;
        }

        private boolean better(Number v, Number acc) {
            if (v instanceof Double d) {
                double a = acc.doubleValue();
                return smallest ? d < a : d > a; // false with a NaN on either side
            }
            long x = v.longValue();
            long a = acc.longValue();
            return smallest ? x < a : x > a;
        }

        @Override
        @SuppressWarnings("unchecked")
        public T getResult(Object[] acc) {
            return (T) acc[0];
        }

        @Override
        public Object[] merge(Object[] a, Object[] b) {
            if (a[0] == null) {
                return b;
            }
            if (b[0] == null) {
                return a;
            }
            return better((Number) b[0], (Number) a[0]) ? b : a;
        }
    }
}
