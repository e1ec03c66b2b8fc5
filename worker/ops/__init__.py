"""Running the service: settings, structured logs, health endpoints and Prometheus metrics."""
