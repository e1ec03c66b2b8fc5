"""The model: autoencoder, preprocessing, scoring, latent prototypes, training, artifact.

The only room that imports torch. It produces `ImageScores` for the detectors and
carries their calibration in the artifact; it never does Kafka or Redis I/O.
"""
