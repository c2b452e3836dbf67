"""`--executor ray`: an Engine that streams requests through Ray Data to an actor pool of engine replicas.

The driver keeps the store and the output (so caching, resume and outputs are those of a local run); only
pending requests travel. A feeder thread pushes them, as JSON rows, into a bounded Ray queue; one read task
of a custom datasource drains that queue, so the whole run is one Ray Data pipeline and each replica loads
its model once. Results come back to the driver with `iter_rows`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from itertools import islice
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import ConfigError, EngineError, first_line

INSTALL_HINT = "pip install 'reasonry[ray]'"
DEFAULT_BATCH = 64
QUEUE_CHUNKS = 8  # chunks of requests waiting in the cluster's queue: bounds the driver's memory
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_TOKEN", "TOKENIZERS_PARALLELISM")
TEST_FAIL_OPTION = "ray_test_fail_marker"  # tests only: a replica raises on prompts containing this text


def request_to_dict(request: Request) -> dict[str, Any]:
    return {**asdict(request), "params": request.params.to_dict()}


def request_from_dict(data: dict[str, Any]) -> Request:
    params = SamplingParams(**{**data["params"], "stop": tuple(data["params"]["stop"])})
    return Request(**{**data, "params": params})


def result_from_dict(data: dict[str, Any]) -> Result:
    return Result(**data)


class Replica:
    """One engine replica: a Ray Data actor that loads the engine once and generates batch after batch."""

    def __init__(self, spec: ModelSpec, options: dict[str, Any]) -> None:
        from reasonry.engines.registry import load_engine

        options = dict(options)
        self.fail_marker: str | None = options.pop(TEST_FAIL_OPTION, None)
        self.engine = load_engine(spec, **options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        requests = [request_from_dict(json.loads(text)) for text in batch["request"]]
        return {"result": [json.dumps(asdict(result), ensure_ascii=False) for result in self.generate(requests)]}

    def generate(self, requests: list[Request]) -> list[Result]:
        """A batch that raises is retried request by request, so only the failing row records the error."""
        try:
            return self._generate_all(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [Result(key=requests[0].key, error=f"replica: {first_line(exc)}", finish_reason="error")]
            return [result for request in requests for result in self.generate([request])]

    def _generate_all(self, requests: list[Request]) -> list[Result]:
        if self.fail_marker and any(self.fail_marker in (r.prompt or "") for r in requests):
            raise RuntimeError(f"test failure hook: prompt contains {self.fail_marker!r}")
        results = {result.key: result for result in self.engine.generate(requests)}
        missing = Result(key="", error="replica: the engine returned no result", finish_reason="error")
        return [results.get(r.key) or Result(**{**asdict(missing), "key": r.key}) for r in requests]


class RayEngine(Engine):
    """Wraps `load_engine(spec, **options)` run as `replicas` Ray actors with `gpus_per_replica` GPUs each."""

    def __init__(self, spec: ModelSpec, options: dict[str, Any] | None = None, *, address: str | None = None,
                 replicas: int = 1, gpus_per_replica: float = 0, batch_size: int | None = None) -> None:
        if replicas < 1:
            raise ConfigError("--replicas must be >= 1")
        if gpus_per_replica < 0:
            raise ConfigError("--gpus-per-replica must be >= 0")
        self.spec = spec
        self.options = dict(options or {})
        self.replicas = replicas
        self.gpus_per_replica = gpus_per_replica
        self.batch_size = batch_size or self.options.get("batch_size") or DEFAULT_BATCH
        self.ray = _import_ray()
        _connect(self.ray, address)  # kept for the next model of the run; Ray shuts down at exit
        self._tokenizer: Any = None

    # -- Engine ------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str | None:
        """Rendered on the driver, as the local engine would, so keys match a local run's."""
        if self.spec.kind == "openai":
            return None
        from reasonry.engines.vllm import chat_tokenizer, render_chat_text

        if self._tokenizer is None:
            self._tokenizer = chat_tokenizer(self.spec)
        return render_chat_text(self._tokenizer, self.spec, messages, prefill)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        from ray.util.queue import Queue

        iterator = iter(requests)
        first = _rows(list(islice(iterator, self.batch_size)))
        if not first:  # everything was cached: no actors are started
            return
        queue = Queue(maxsize=QUEUE_CHUNKS, actor_options={"num_cpus": 0})
        stop = threading.Event()
        failures: list[BaseException] = []
        feeder = threading.Thread(target=self._feed, args=(first, iterator, queue, stop, failures),
                                  name="reasonry-ray-feeder", daemon=True)
        feeder.start()
        try:
            yield from self._results(self._dataset(queue, _block_bytes(first)))
        finally:
            stop.set()
            feeder.join(timeout=10)
            queue.shutdown(force=True)
        if failures:
            raise failures[0]

    # -- pipeline ------------------------------------------------------------------
    def _feed(self, first: list[dict[str, str]], requests: Iterator[Request], queue: Any, stop: threading.Event,
              failures: list[BaseException]) -> None:
        try:
            rows = first
            while rows and not stop.is_set():
                _put(queue, rows, stop)
                rows = _rows(list(islice(requests, self.batch_size)))
        except BaseException as exc:  # e.g. an unreadable input row: re-raised on the driver's thread
            failures.append(exc)
        finally:
            _put(queue, None, stop)  # end of input; the read task finishes and the pipeline drains

    def _results(self, dataset: Any) -> Iterator[Result]:
        try:
            for row in dataset.iter_rows():
                yield result_from_dict(json.loads(row["result"]))
        except self.ray.exceptions.RayError as exc:
            raise EngineError(f"--executor ray: the replicas of {self.spec} failed ({_ray_cause(exc)})") from None

    def _dataset(self, queue: Any, block_bytes: int) -> Any:
        dataset = self.ray.data.read_datasource(_queue_datasource(queue), override_num_blocks=1, num_cpus=0)
        dataset.context.target_max_block_size = block_bytes
        dataset.context.enable_progress_bars = False  # reasonry's own progress bar counts the rows
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        resources: dict[str, Any] = {"num_cpus": 1}
        if self.gpus_per_replica:
            resources["num_gpus"] = self.gpus_per_replica
        return dataset.map_batches(
            Replica, fn_constructor_kwargs={"spec": self.spec, "options": self.options},
            batch_size=self.batch_size, concurrency=self.replicas, **resources,
        )


def _rows(requests: list[Request]) -> list[dict[str, str]]:
    return [{"key": r.key, "request": json.dumps(request_to_dict(r), ensure_ascii=False)} for r in requests]


def _block_bytes(chunk: list[dict[str, str]]) -> int:
    """Ray Data's read operator holds rows until a block passes its target size (128 MiB by default). A target
    just under one chunk's size makes each chunk of `batch_size` requests its own block, so chunks flow to the
    replicas as they arrive instead of piling up in one block that one replica would take."""
    import pyarrow as pa

    return max(1, int(pa.Table.from_pylist(chunk).nbytes * 0.75))


def _put(queue: Any, item: Any, stop: threading.Event) -> None:
    """Put `item` on the bounded queue, giving up once the driver has stopped reading results."""
    from ray.util.queue import Full

    while not stop.is_set():
        try:
            queue.put(item, timeout=1)
            return
        except Full:
            continue


def _read_queue(queue: Any) -> Iterator[Any]:
    import pyarrow as pa

    while (rows := queue.get()) is not None:
        yield pa.Table.from_pylist(rows)


def _queue_datasource_class() -> type:
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class QueueDatasource(Datasource):
        """One read task that yields the rows the driver puts on `queue` until it puts None."""

        def __init__(self, queue: Any) -> None:
            self.queue = queue

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            queue = self.queue
            metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(lambda: _read_queue(queue), metadata)]

    return QueueDatasource


def _queue_datasource(queue: Any) -> Any:
    """Defined on first use: ray is an optional extra."""
    return _queue_datasource_class()(queue)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(f"--executor ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


def _connect(ray: Any, address: str | None) -> None:
    """Join `address` (or RAY_ADDRESS, or start a local cluster) unless this process already joined one."""
    if ray.is_initialized():
        return
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local cluster"
        raise EngineError(f"--ray-address: cannot start or join Ray at {where} ({first_line(exc)})") from None


def _ray_cause(exc: BaseException) -> str:
    """The replica's own error line (e.g. `EngineError: ... does not exist`) from Ray's wrapped traceback."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if "Error: " in line]
    return lines[-1][:300] if lines else first_line(cause)
