"""The stream runtime: decode, score, detect, publish and checkpoint, batch by batch.

The worker's Kafka and Redis I/O live here and nowhere else. It uses the model and detection; the
processing guarantee is written down once, in `checkpoint.py`.
"""
