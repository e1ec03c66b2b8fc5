"""How framedrift runs: local real servers for the demo and tests, compose and Kubernetes files."""
