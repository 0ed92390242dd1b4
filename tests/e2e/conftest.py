"""End-to-end tests: the service started by `scripts/serve`, driven over HTTP only."""
