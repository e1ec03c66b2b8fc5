"""Product commands that measure detection offline: `framedrift evaluate` and `framedrift seeds`."""
