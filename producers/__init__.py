"""Event sources for framedrift: dataset readers, drift scenarios, the Kafka producer."""
