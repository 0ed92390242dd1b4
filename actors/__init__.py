"""Ray actors holding the service's state (registry, traffic, monitor)."""
