"""The ports: the capabilities the use cases need from their engines, as small Protocols,
one module per capability.

Adapters (`app.adapters`) implement them and are named after the technology
(`MlflowExperimentTracker`); use cases (`app.services`) and the API depend only on these
Protocols. Every method documents the domain errors it raises; adapters translate their
engine's errors into those.
"""
