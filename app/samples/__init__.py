"""Sample data and models the service ships for demos, tests and benchmarks: a churn
dataset generator, daily feature snapshots for the Feast repository, a tiny Llama."""
