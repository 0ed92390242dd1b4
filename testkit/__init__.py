"""Support shared by the tests and the benchmarks: tokens, settings, in-process apps, the
service started as the README starts it, and MLflow runs that log tiny real models."""
