"""The two ends of the remote-notebook test, run as `python -m tests.integration.mlflow_remote`.

`server ROOT PORT TRACKING_URI ARTIFACT_ROOT TOKEN_SHA256`: the service's MLflow deployment
class (its gateway, its settings) under uvicorn on loopback, without Ray.

`client URL`: what a data scientist's notebook does with only the URL and a token
(`MLFLOW_TRACKING_TOKEN`): log a run with a pyfunc model, load the model back, print JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile

import mlflow
import pandas as pd


def serve(port: int, tracking_uri: str, artifact_root: str, token_sha256: str) -> None:
    import uvicorn

    from app.adapters.mlflow_store import prepare_mlflow_store
    from app.core.access import Role
    from app.settings import AuthSettings, MlflowSettings, StateSettings, TokenEntry
    from deployments.mlflow_server import MlflowServer

    prepare_mlflow_store(tracking_uri, artifact_root)
    settings = MlflowSettings(tracking_uri=tracking_uri, artifact_root=artifact_root)
    token = TokenEntry(name="notebook", roles=(Role.ENGINEER,), sha256=token_sha256)
    auth = AuthSettings(tokens=(token,))
    state_dir = tempfile.mkdtemp(prefix="mlflow-remote-state-")
    state = StateSettings(database_url=f"sqlite:///{state_dir}/service.db")
    app = MlflowServer(settings, auth, state, "WARNING").__serve_build_asgi_app__()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc model; pickled by value, so loadable anywhere."""

    def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> list:
        return [2 * x for x in model_input["x"]]


def notebook(url: str) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    mlflow.set_tracking_uri(url)
    experiment_id = mlflow.create_experiment("notebook")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("kind", "doubler")
        mlflow.log_metric("accuracy", 0.93)
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=Doubler(),
            input_example=pd.DataFrame({"x": [1.0, 2.0]}),
            pip_requirements=["pandas"],
        )
    loaded = mlflow.pyfunc.load_model(logged.model_uri)
    # registered in MLflow's own registry both ways a notebook does it: by a runs:/ URI,
    # and by the run's (proxied) artifact location
    client = mlflow.MlflowClient()
    by_uri = mlflow.register_model(f"runs:/{run.info.run_id}/model", "notebook-model")
    artifact_uri = client.get_run(run.info.run_id).info.artifact_uri
    by_source = client.create_model_version(
        "notebook-model", f"{artifact_uri}/model", run_id=run.info.run_id
    )
    experiment = mlflow.get_experiment(experiment_id)
    sys.stdout.write(
        json.dumps(
            {
                "run_id": run.info.run_id,
                "run_artifact_uri": mlflow.get_run(run.info.run_id).info.artifact_uri,
                "experiment_location": experiment.artifact_location,
                "model_uri": logged.model_uri,
                "model_artifact_location": mlflow.get_logged_model(
                    logged.model_id
                ).artifact_location,
                "predictions": list(loaded.predict(pd.DataFrame({"x": [1.5, 4.0]}))),
                "registered": [int(by_uri.version), int(by_source.version)],
                "registered_source": by_source.source,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        notebook(sys.argv[2])
