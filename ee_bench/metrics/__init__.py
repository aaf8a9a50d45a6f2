"""Task-quality metrics (a registry; each metric declares its direction, unit and aggregation)."""
