"""Built-in aggregate functions (re-exported from ``runtime.api.aggregates``)."""

from runtime.api.aggregates import Collect, Count, Max, Mean, Min, Quantiles, Reduce, Sum

__all__ = ["Collect", "Count", "Max", "Mean", "Min", "Quantiles", "Reduce", "Sum"]
