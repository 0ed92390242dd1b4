"""The pure pieces of the triton and vllm backends: Triton model configurations, vLLM engine
configurations, preparing and settling backends for a deployment, the LLM gateway and the
per-backend invoker.

The Triton, LLM and model invoker ports here are fakes of our own Protocols; the real
adapters run in tests/integration (Triton and vLLM engines, Serve handles).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.adapters.serve_invoker import BackendInvoker
from app.adapters.triton_export import ExportedModel, RepositoryOptions, config_pbtxt, triton_name
from app.adapters.vllm_backend import CPU_DTYPE_FILE, app_name, engine_config, engine_failure
from app.core.deployment import Arm, DeploySpec
from app.core.feedback import PredictionRef
from app.core.model_io import RowBlock
from app.core.routing import BUCKETS, Backend, Role, RoutingTable, Strategy, Variant, bucket
from app.errors import ErrorCode, InvalidInput, NotFound, Unavailable, UpstreamFailed
from app.services.backends import Backends
from app.services.llm import LlmAnswer, LlmGateway
from app.settings import LlmSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SALT = "salt-1"


# Triton model configurations


def exported(output_dims: tuple[int, ...] = ()) -> ExportedModel:
    return ExportedModel("churn__v3", 4, ("a", "b", "c", "d"), output_dims)


def test_triton_names_keep_allowed_characters_and_replace_the_others() -> None:
    assert triton_name("churn", 3) == "churn__v3"
    assert triton_name("fraud.model-2_b", 12) == "fraud.model-2_b__v12"
    assert triton_name("fraud/model v2+x", 1) == "fraud_model_v2_x__v1"


def test_the_default_config_runs_the_python_backend_with_dynamic_batching_on_cpu() -> None:
    text = config_pbtxt(exported(), RepositoryOptions())
    lines = text.splitlines()
    assert lines[:3] == ['name: "churn__v3"', 'backend: "python"', "max_batch_size: 64"]
    assert "platform:" not in text
    assert 'name: "INPUT__0"\n    data_type: TYPE_FP32\n    dims: [ 4 ]\n' in text
    assert "dynamic_batching {\n  max_queue_delay_microseconds: 500\n}" in text
    assert "    kind: KIND_CPU\n    count: 1\n" in text


def test_a_scalar_output_is_one_value_reshaped_to_no_dimension() -> None:
    text = config_pbtxt(exported(()), RepositoryOptions())
    assert (
        "output [\n"
        "  {\n"
        '    name: "OUTPUT__0"\n'
        "    data_type: TYPE_FP32\n"
        "    dims: [ 1 ]\n"
        "    reshape: { shape: [ ] }\n"
        "  }\n"
        "]\n"
    ) in text


def test_vector_and_matrix_outputs_keep_their_dimensions_without_reshape() -> None:
    vector = config_pbtxt(exported((3,)), RepositoryOptions())
    matrix = config_pbtxt(exported((2, 5)), RepositoryOptions())
    assert '"OUTPUT__0"\n    data_type: TYPE_FP32\n    dims: [ 3 ]\n  }' in vector
    assert '"OUTPUT__0"\n    data_type: TYPE_FP32\n    dims: [ 2, 5 ]\n  }' in matrix
    assert "reshape" not in vector and "reshape" not in matrix


def test_the_native_config_uses_libtorch_and_the_configured_instances() -> None:
    options = RepositoryOptions(
        native_backend=True,
        instance_kind="KIND_GPU",
        instances=2,
        max_batch_size=8,
        max_queue_delay_us=100,
    )
    text = config_pbtxt(exported((2,)), options)
    assert text.splitlines()[1] == 'platform: "pytorch_libtorch"'
    assert "backend:" not in text
    assert "max_batch_size: 8\n" in text
    assert "max_queue_delay_microseconds: 100\n" in text
    assert "    kind: KIND_GPU\n    count: 2\n" in text


# vLLM engine configurations


def test_an_llm_version_runs_as_its_own_application() -> None:
    assert app_name("tiny", 2) == "llm-tiny-v2"


def test_an_engine_failure_is_named_from_its_text_when_vllm_is_not_importable() -> None:
    import ray

    dead = ray.exceptions.RayTaskError(
        "openai", "Traceback ...\nvllm.v1.engine.exceptions.EngineDeadError: EngineCore died", None
    )
    assert engine_failure(dead) == "EngineDeadError"
    other = ray.exceptions.RayTaskError("openai", "Traceback ...", ValueError("x"))
    assert engine_failure(other) == "ValueError"
    # what the ingress gets, where vLLM's exception types do not load
    unloadable = ray.exceptions.UnserializableException(
        "ray.exceptions.RayTaskError: ...\nvllm.v1.engine.exceptions.EngineDeadError: EngineCore"
    )
    assert engine_failure(unloadable) == "EngineDeadError"
    # how the replica raises any failed generation (deployments.llm_server.FAILURE)
    named = ray.exceptions.RayTaskError(
        "openai",
        "Traceback ...\nRuntimeError: ml-service.engine-failure OpenAIHTTPException: busy",
        RuntimeError("ml-service.engine-failure OpenAIHTTPException: busy"),
    )
    assert engine_failure(named) == "OpenAIHTTPException"


def test_a_cpu_engine_asks_for_cpus_only_and_runs_in_the_llm_environment() -> None:
    settings = LlmSettings(device="cpu", environment=Path("/x/.venv-llm"))
    config = engine_config(settings, "tiny", Path("/cache/tiny/2"))  # never probed: float32
    assert config["model_loading_config"] == {"model_id": "tiny", "model_source": "/cache/tiny/2"}
    assert config["accelerator_config"] == {"kind": "cpu"}
    assert config["placement_group_config"] == {"bundles": [{"CPU": 0.25}]}
    assert config["engine_kwargs"] == {"enforce_eager": True, "dtype": "float32"}
    runtime = config["runtime_env"]
    assert runtime["py_executable"] == "/x/.venv-llm/bin/python"
    assert runtime["env_vars"]["PYTHONPATH"] == str(PROJECT_ROOT)
    assert runtime["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert runtime["env_vars"]["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    # the replica gathers streamed tokens itself (the first at once); Ray Serve LLM's off
    assert runtime["env_vars"]["ML_LLM_STREAM_INTERVAL_MS"] == "10"
    assert config["experimental_configs"] == {"stream_batching_interval_ms": 0}
    gathered = LlmSettings(stream_batching_interval_ms=2.5)
    env = engine_config(gathered, "tiny", Path("/m"))["runtime_env"]["env_vars"]
    assert env["ML_LLM_STREAM_INTERVAL_MS"] == "2.5"
    assert config["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 1,
        "target_ongoing_requests": 16,
    }


@pytest.mark.parametrize(
    ("probed", "expected"),
    [
        ("bfloat16\n", "bfloat16"),
        ("float32\n", "float32"),
        ("garbage", "float32"),
        (None, "float32"),
    ],
)
def test_a_cpu_engine_runs_the_dtype_the_machine_was_probed_for(
    tmp_path: Path, probed: str | None, expected: str
) -> None:
    if probed is not None:
        (tmp_path / CPU_DTYPE_FILE).write_text(probed)
    settings = LlmSettings(device="cpu", environment=tmp_path)
    assert engine_config(settings, "tiny", Path("/m"))["engine_kwargs"]["dtype"] == expected
    explicit = LlmSettings(device="cpu", environment=tmp_path, dtype="bfloat16")
    assert engine_config(explicit, "tiny", Path("/m"))["engine_kwargs"]["dtype"] == "bfloat16"


def test_a_gpu_engine_asks_for_one_gpu_a_replica_and_passes_the_engine_settings() -> None:
    settings = LlmSettings(
        device="gpu",
        environment=Path("/x/.venv-llm"),
        enforce_eager=False,
        dtype="bfloat16",
        max_model_len=2048,
        cpus_per_replica=2,
        min_replicas=1,
        max_replicas=3,
        target_ongoing_requests=4,
    )
    config = engine_config(settings, "tiny", Path("/cache/tiny/2"))
    assert config["accelerator_config"] == {"kind": "gpu"}
    assert config["placement_group_config"] == {"bundles": [{"CPU": 2.0, "GPU": 1}]}
    assert config["engine_kwargs"] == {
        "enforce_eager": False,
        "dtype": "bfloat16",
        "max_model_len": 2048,
    }
    assert config["runtime_env"]["py_executable"] == "/x/.venv-llm/bin/python"
    assert config["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 4,
    }


# Preparing and settling backends


class RecordingTriton:
    """The `TritonBackend` port: remembers what it prepared, or refuses every version."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.prepared: list[tuple[str, int]] = []

    async def prepare(self, model: str, version: int) -> None:
        if self.refuse:
            raise InvalidInput.for_field("backend", f"version {version} cannot run on Triton")
        self.prepared.append((model, version))


class FakeEngines:
    """The `LlmBackend` port: remembers starts and stops, answers with scripted items, and
    fails (on the first item, as a down engine does) when given a failure."""

    def __init__(
        self,
        answer: Sequence[Any] = (),
        failure: Exception | None = None,
        retire_fails: bool = False,
    ) -> None:
        self.answer = list(answer)
        self.failure = failure
        self.retire_fails = retire_fails
        self.ensured: list[tuple[str, int]] = []
        self.retired: list[tuple[str, set[int]]] = []
        self.requests: list[tuple[str, int, str, dict[str, Any]]] = []

    async def ensure(self, model: str, version: int) -> None:
        self.ensured.append((model, version))

    async def stream(
        self, model: str, version: int, kind: str, body: dict[str, Any]
    ) -> AsyncIterator[Any]:
        self.requests.append((model, version, kind, body))
        if self.failure is not None:
            raise self.failure
        for item in self.answer:
            yield item

    async def retire(self, model: str, keep: set[int]) -> None:
        self.retired.append((model, keep))
        if self.retire_fails:
            raise RuntimeError("serve is not answering")


def test_versions_on_the_model_server_need_no_preparation() -> None:
    triton, engines = RecordingTriton(), FakeEngines()
    asyncio.run(Backends(triton, engines).prepare("churn", DeploySpec(Strategy.REPLACE, 3)))
    asyncio.run(Backends(None, None).prepare("churn", DeploySpec(Strategy.REPLACE, 3)))
    assert triton.prepared == [] and engines.ensured == []


def test_each_version_is_prepared_on_its_own_backend() -> None:
    triton, engines = RecordingTriton(), FakeEngines()
    spec = DeploySpec(
        Strategy.AB,
        arms=(Arm(1, 40), Arm(2, 30, Backend.TRITON), Arm(3, 30, Backend.VLLM)),
    )
    asyncio.run(Backends(triton, engines).prepare("churn", spec))
    assert triton.prepared == [("churn", 2)]
    assert engines.ensured == [("churn", 3)]


def test_a_canary_prepares_only_the_new_version() -> None:
    engines = FakeEngines()
    spec = DeploySpec(Strategy.CANARY, version=4, backend=Backend.VLLM)
    asyncio.run(Backends(None, engines).prepare("tiny", spec))
    assert engines.ensured == [("tiny", 4)]


@pytest.mark.parametrize("backend", [Backend.TRITON, Backend.VLLM])
def test_a_backend_that_is_not_part_of_the_service_is_unavailable(backend: Backend) -> None:
    spec = DeploySpec(Strategy.REPLACE, version=2, backend=backend)
    with pytest.raises(Unavailable) as refused:
        asyncio.run(Backends(None, None).prepare("churn", spec))
    assert refused.value.code is ErrorCode.BACKEND_UNAVAILABLE


def test_a_version_that_cannot_run_on_its_backend_fails_the_preparation() -> None:
    spec = DeploySpec(Strategy.REPLACE, version=2, backend=Backend.TRITON)
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(Backends(RecordingTriton(refuse=True), None).prepare("churn", spec))
    assert refused.value.field_errors[0].field == "backend"


def test_settling_keeps_the_engines_of_the_tables_llm_variants() -> None:
    engines = FakeEngines()
    table = RoutingTable(
        "tiny",
        4,
        SALT,
        Strategy.AB,
        (
            Variant("v1-vllm", 1, 50, Role.PRIMARY, Backend.VLLM),
            Variant("v2-vllm", 2, 50, Role.CANDIDATE, Backend.VLLM),
            Variant("v3", 3, 0, Role.PRIMARY),
        ),
    )
    asyncio.run(Backends(None, engines).settle("tiny", table))
    assert engines.retired == [("tiny", {1, 2})]


def test_settling_an_undeployed_model_stops_all_its_engines() -> None:
    engines = FakeEngines()
    asyncio.run(Backends(None, engines).settle("tiny", None))
    assert engines.retired == [("tiny", set())]


def test_settling_survives_engines_that_cannot_be_stopped_and_services_without_llms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engines = FakeEngines(retire_fails=True)
    with caplog.at_level(logging.ERROR, logger="app.backends"):
        asyncio.run(Backends(None, engines).settle("tiny", None))
    asyncio.run(Backends(RecordingTriton(), None).settle("tiny", None))
    assert engines.retired == [("tiny", set())]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


# The LLM gateway


class Tables:
    """The `RoutingSource` port over a fixed set of tables."""

    def __init__(self, *tables: RoutingTable) -> None:
        self._tables = {t.model: t for t in tables}

    def get(self, model: str) -> RoutingTable | None:
        return self._tables.get(model)


class RecordingRecorder:
    """The `ServingRecorder` port: keeps every event in order."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.latencies: list[float] = []
        self.refs: list[PredictionRef] = []

    def started(self, model: str, variant: str) -> None:
        self.events.append(("started", model, variant))

    def finished(self, model: str, variant: str, latency_ms: float, ok: bool) -> None:
        self.events.append(("finished", model, variant, ok))
        self.latencies.append(latency_ms)

    def rejected(self, model: str, variant: str) -> None:
        self.events.append(("rejected", model, variant))

    def predicted(self, ref: PredictionRef) -> None:
        self.refs.append(ref)

    def compared(self, model: str, variant: str, rows: int, agreed: int) -> None:
        raise AssertionError("LLM calls are never mirrored to a shadow")


V1 = Variant("v1-vllm", 1, 50, Role.PRIMARY, Backend.VLLM)
V2 = Variant("v2-vllm", 2, 50, Role.CANDIDATE, Backend.VLLM)
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
REPLY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}]}


def gateway(
    engines: FakeEngines,
    recorder: RecordingRecorder,
    *variants: Variant,
    draw: float = 0.0,
) -> LlmGateway:
    table = RoutingTable("tiny", 1, SALT, Strategy.AB, variants or (V1, V2))
    return LlmGateway(Tables(table), engines, recorder, lambda: draw)


def call(
    llm: LlmGateway, body: dict[str, Any], key: str | None = None, kind: str = "chat"
) -> LlmAnswer:
    return asyncio.run(llm.call(kind, body, key, "req-1"))


def user_in_upper_half() -> str:
    """A user whose sticky bucket falls on the second of two equal variants."""
    return next(u for u in (f"user-{i}" for i in range(1000)) if bucket(u, SALT) >= BUCKETS / 2)


def key_in_lower_half() -> str:
    return next(k for k in (f"key-{i}" for i in range(1000)) if bucket(k, SALT) < BUCKETS / 2)


@pytest.mark.parametrize("body", [{}, {"model": ""}, {"model": 7}])
def test_a_request_without_a_model_name_is_invalid(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        call(gateway(FakeEngines(), RecordingRecorder()), body)
    assert refused.value.field_errors[0].field == "model"


def test_a_model_without_a_routing_table_is_not_deployed() -> None:
    with pytest.raises(NotFound) as refused:
        call(gateway(FakeEngines(), RecordingRecorder()), {**CHAT, "model": "churn"})
    assert refused.value.code is ErrorCode.NOT_DEPLOYED


def test_a_variant_off_the_llm_backend_is_refused_without_calling_anything() -> None:
    engines, recorder = FakeEngines([REPLY]), RecordingRecorder()
    llm = gateway(engines, recorder, Variant("v1", 1, 100, Role.PRIMARY))
    with pytest.raises(InvalidInput) as refused:
        call(llm, CHAT)
    assert refused.value.field_errors[0].field == "model"
    assert engines.requests == [] and recorder.events == []


def test_a_whole_response_is_returned_and_recorded_with_its_text() -> None:
    engines, recorder = FakeEngines([REPLY]), RecordingRecorder()
    answer = call(gateway(engines, recorder, draw=0.0), CHAT)
    assert answer == LlmAnswer("tiny", 1, "v1-vllm", REPLY, None)
    assert engines.requests == [("tiny", 1, "chat", CHAT)]
    assert recorder.events == [
        ("started", "tiny", "v1-vllm"),
        ("finished", "tiny", "v1-vllm", True),
    ]
    assert recorder.latencies[0] >= 0
    [ref] = recorder.refs
    assert (ref.request_id, ref.model, ref.variant, ref.version) == ("req-1", "tiny", "v1-vllm", 1)
    assert ref.predictions == ("hello",)


def test_a_completion_is_recorded_with_its_choices_texts() -> None:
    completion = {"choices": [{"index": 0, "text": "one"}, {"index": 1, "text": "two"}]}
    recorder = RecordingRecorder()
    body = {"model": "tiny", "prompt": "count"}
    answer = call(gateway(FakeEngines([completion]), recorder), body, kind="completions")
    assert answer.response == completion
    assert recorder.refs[0].predictions == ("one", "two")


def test_an_engine_rejecting_the_body_is_invalid_input_and_not_the_versions_error() -> None:
    rejection = {"error": {"message": "messages: field required", "code": 400}}
    recorder = RecordingRecorder()
    with pytest.raises(InvalidInput) as refused:
        call(gateway(FakeEngines([rejection]), recorder), CHAT)
    assert refused.value.field_errors[0].field == "body"
    assert recorder.events[-1] == ("rejected", "tiny", "v1-vllm")  # not counted as an error
    assert recorder.refs == []


@pytest.mark.parametrize("error", [{"message": "engine died", "code": 500}, {"message": "?"}])
def test_an_engine_failure_is_an_upstream_failure_and_not_ok(error: dict[str, Any]) -> None:
    recorder = RecordingRecorder()
    with pytest.raises(UpstreamFailed) as failed:
        call(gateway(FakeEngines([{"error": error}]), recorder), CHAT)
    assert failed.value.code is ErrorCode.PREDICTION_FAILED
    assert recorder.events[-1] == ("finished", "tiny", "v1-vllm", False)
    assert recorder.refs == []


def test_an_engine_that_answers_nothing_is_an_upstream_failure() -> None:
    recorder = RecordingRecorder()
    with pytest.raises(UpstreamFailed):
        call(gateway(FakeEngines([]), recorder), CHAT)
    assert recorder.events[-1] == ("finished", "tiny", "v1-vllm", False)


def test_an_engine_that_is_down_fails_the_call_and_is_recorded_not_ok() -> None:
    down = Unavailable(ErrorCode.BACKEND_UNAVAILABLE, "not running")
    recorder = RecordingRecorder()
    with pytest.raises(Unavailable):
        call(gateway(FakeEngines(failure=down), recorder), CHAT)
    assert recorder.events == [
        ("started", "tiny", "v1-vllm"),
        ("finished", "tiny", "v1-vllm", False),
    ]


def test_a_stream_is_relayed_and_recorded_ok_only_once_consumed() -> None:
    chunks = ['data: {"a": 1}\n\n', {"b": 2}, "data: [DONE]\n\n"]
    engines, recorder = FakeEngines(chunks), RecordingRecorder()
    llm = gateway(engines, recorder)

    async def scenario() -> tuple[LlmAnswer, list[tuple[object, ...]], list[str]]:
        answer = await llm.call("chat", {**CHAT, "stream": True}, None, "req-1")
        before = list(recorder.events)
        assert answer.stream is not None
        return answer, before, [chunk async for chunk in answer.stream]

    answer, before, relayed = asyncio.run(scenario())
    assert answer.response is None and answer.variant == "v1-vllm"
    assert before == [("started", "tiny", "v1-vllm")]
    assert relayed == ['data: {"a": 1}\n\n', 'data: {"b": 2}\n\n', "data: [DONE]\n\n"]
    assert recorder.events[-1] == ("finished", "tiny", "v1-vllm", True)
    assert recorder.refs == []


def test_a_stream_abandoned_midway_is_recorded_not_ok() -> None:
    recorder = RecordingRecorder()
    llm = gateway(FakeEngines(["data: 1\n\n", "data: 2\n\n"]), recorder)

    async def scenario() -> str:
        answer = await llm.call("chat", {**CHAT, "stream": True}, None, "req-1")
        stream = answer.stream
        assert stream is not None and hasattr(stream, "aclose")
        first: str = await anext(stream)
        await stream.aclose()
        return first

    assert asyncio.run(scenario()) == "data: 1\n\n"
    assert recorder.events[-1] == ("finished", "tiny", "v1-vllm", False)


def test_without_a_key_the_draw_picks_the_variant() -> None:
    engines = FakeEngines([REPLY])
    answer = call(gateway(engines, RecordingRecorder(), draw=0.99), CHAT)
    assert (answer.variant, answer.version) == ("v2-vllm", 2)
    assert engines.requests[0][1] == 2


def test_the_user_field_is_the_sticky_key_unless_a_key_is_given() -> None:
    body = {**CHAT, "user": user_in_upper_half()}
    by_user = call(gateway(FakeEngines([REPLY]), RecordingRecorder(), draw=0.0), body)
    assert by_user.variant == "v2-vllm"
    by_key = call(
        gateway(FakeEngines([REPLY]), RecordingRecorder(), draw=0.99), body, key_in_lower_half()
    )
    assert by_key.variant == "v1-vllm"


# The per-backend invoker


class LabelledInvoker:
    """The `ModelInvoker` port: answers with its label for every row."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls: list[tuple[str, str]] = []

    async def predict(self, model: str, variant: Variant, block: RowBlock) -> list[Any]:
        self.calls.append((model, variant.name))
        return [self.label] * len(block)


def invoker(*backends: Backend) -> BackendInvoker:
    invokers: dict[Backend, Any] = {b: LabelledInvoker(b.value) for b in backends}
    return BackendInvoker(invokers)


def test_each_variant_is_called_on_its_backend() -> None:
    both = invoker(Backend.RAY, Backend.TRITON)
    rows = [[1.0, 2.0], [3.0, 4.0]]
    on_ray = asyncio.run(both.predict("churn", Variant("v1", 1, 50, Role.PRIMARY), rows))
    triton = Variant("v2-triton", 2, 50, Role.CANDIDATE, Backend.TRITON)
    on_triton = asyncio.run(both.predict("churn", triton, rows))
    assert on_ray == ["ray", "ray"] and on_triton == ["triton", "triton"]


def test_an_llm_variant_is_not_predicted_on() -> None:
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(invoker(Backend.RAY).predict("tiny", V1, [[1.0]]))
    assert refused.value.field_errors[0].field == "model"


def test_a_backend_without_an_invoker_is_unavailable() -> None:
    triton = Variant("v2-triton", 2, 100, Role.PRIMARY, Backend.TRITON)
    with pytest.raises(Unavailable) as refused:
        asyncio.run(invoker(Backend.RAY).predict("churn", triton, [[1.0]]))
    assert refused.value.code is ErrorCode.BACKEND_UNAVAILABLE


def test_a_stream_dropped_before_its_first_byte_is_recorded_not_ok() -> None:
    import gc

    recorder = RecordingRecorder()
    llm = gateway(FakeEngines(["data: 1\n\n", "data: 2\n\n"]), recorder)

    async def scenario() -> None:
        answer = await llm.call("chat", {**CHAT, "stream": True}, None, "req-1")
        assert answer.stream is not None
        assert recorder.events[-1][0] == "started"
        del answer  # the client went away before the response started
        gc.collect()

    asyncio.run(scenario())
    assert recorder.events[-1] == ("finished", "tiny", "v1-vllm", False)


def test_replaced_engines_are_retired_after_the_drain_delay_by_the_table_then() -> None:
    engines = FakeEngines()
    replaced = RoutingTable(
        "tiny",
        5,
        SALT,
        Strategy.REPLACE,
        (
            Variant("v2-vllm", 2, 100, Role.PRIMARY, Backend.VLLM),
            Variant("v1-vllm", 1, 0, Role.PRIMARY, Backend.VLLM),  # kept for its stats
        ),
    )
    backends = Backends(None, engines, Tables(replaced), retire_after_s=0.05)
    older = RoutingTable(
        "tiny", 4, SALT, Strategy.REPLACE, (Variant("v1-vllm", 1, 100, Role.PRIMARY, Backend.VLLM),)
    )

    async def scenario() -> list[tuple[str, set[int]]]:
        await backends.settle("tiny", older)  # a newer table by then: that one decides
        assert engines.retired == []
        await asyncio.sleep(0.2)
        return engines.retired

    assert asyncio.run(scenario()) == [("tiny", {2})]


def test_an_ab_test_cannot_mix_llm_and_other_variants() -> None:
    from pydantic import ValidationError

    from app.api.schemas.serving import DeployRequest

    arms = [{"version": 1, "weight": 50, "backend": "vllm"}, {"version": 2, "weight": 50}]
    with pytest.raises(ValidationError, match="cannot mix vllm"):
        DeployRequest.model_validate({"strategy": "ab", "variants": arms})
    both = [{**arm, "backend": "vllm"} for arm in arms]
    assert DeployRequest.model_validate({"strategy": "ab", "variants": both}).variants
