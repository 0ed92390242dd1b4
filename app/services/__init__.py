"""The use cases: what the service does, on its ports (`app.ports`) only. Each module is
one capability (prediction, deployments, promotions, training jobs, features,
monitoring, the LLM gateway); `container.Services` holds them for the API."""
