"""framedrift's worker: scores image events with an autoencoder, watches each source for drift."""
