"""modelops: from production data to a served, monitored, retrainable model."""

__version__ = "0.1.0"
