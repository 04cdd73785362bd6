"""The built-in task: one-minute temperature readings to hourly statistics, as CSV."""

DEFAULT_MAX_SPAN_HOURS = 87_600  # ten years of hours: a year's file spans 8,760
