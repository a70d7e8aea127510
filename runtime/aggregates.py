"""Built-in aggregate functions (re-exported from ``runtime.api.aggregates``)."""

from runtime.api.aggregates import Count, Max, Mean, Min, Quantiles, Sum

__all__ = ["Count", "Max", "Mean", "Min", "Quantiles", "Sum"]
