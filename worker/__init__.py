"""framedrift's worker: scores image events with an autoencoder and watches each source for drift."""
