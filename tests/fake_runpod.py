"""A stateful fake of one RunPod Serverless queue endpoint: a real HTTP server on loopback
(ThreadingHTTPServer on port 0, in a thread), started and stopped by the test using it.

A fake because api.runpod.ai cannot be reached from this machine; the handler it runs is
the real one (deploy/runpod/handler.py, on the CPU with tiny models), called the way
RunPod's Python SDK calls it: `handler({"id": ..., "input": ...})`, in a thread of its own
per job. It follows the documented API (https://docs.runpod.io/serverless/endpoints/
operation-reference, send-requests, job-states):

- `POST /v2/{endpoint}/run {"input": {...}}` → `{"id", "status": "IN_QUEUE"}`;
- `POST /v2/{endpoint}/runsync?wait=ms` → the finished job, or the job still IN_QUEUE /
  IN_PROGRESS once `wait` has passed;
- `GET /v2/{endpoint}/status/{id}` → IN_QUEUE (for `queue_seconds`), IN_PROGRESS while
  the handler runs, then COMPLETED with `output`, `delayTime` and `executionTime` (ms), or
  FAILED with `error`; CANCELLED; TIMED_OUT;
- `POST /v2/{endpoint}/cancel/{id}` → `{"id", "status": "CANCELLED"}`;
- `Authorization: Bearer <key>` (or the bare key, as some of RunPod's examples send it),
  else 401; another endpoint id is 404; a body past 10 MB (/run) or 20 MB (/runsync) is 400.

As RunPod's SDK does, a handler's returned `{"error": ...}` fails the job with that text,
and a raised exception fails it with a JSON document (error_type, error_message,
error_traceback). Bodies of error answers (404 for a forgotten job, 401, 429) are the
fake's own: RunPod does not document them.

Switches: `fail_next` (the next jobs fail as if the worker crashed), `stall_next` (the
next jobs start and never finish: only a cancel ends them), `time_out_next` (they end
TIMED_OUT), `rate_limit_next` (the next requests are answered 429 with `retry_after`),
`status_errors_next` (the next /status calls answer 503), `runsync_wait_seconds` (/runsync
answers a job still running sooner than its `?wait=`), `forget_finished()` (results
expire). It counts `submissions` (inputs), `cancels` (job ids) and `seen` (every request).

`publish(data)` serves a file at a URL of its own without the key, as a public endpoint's
`image_url` (https://image.runpod.ai/...) is served (tests/fake_runpod_qwen.py).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_print_providers import LoopbackServer

RUN_LIMIT = 10_000_000
RUNSYNC_LIMIT = 20_000_000
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


@dataclass
class FakeJob:
    id: str
    input: dict
    mode: str = "run"  # run | fail | stall | time_out
    status: str = "IN_QUEUE"
    submitted: float = field(default_factory=time.monotonic)
    delay_ms: int | None = None
    execution_ms: int | None = None
    output: Any = None
    error: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def answer(self) -> dict:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.delay_ms is not None:
            body["delayTime"] = self.delay_ms
        if self.execution_ms is not None:
            body["executionTime"] = self.execution_ms
        if self.status in ("IN_PROGRESS", "COMPLETED", "FAILED"):
            body["workerId"] = "fake-worker-1"
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


class FakeRunPod:
    def __init__(
        self,
        handler: Callable[[dict], Any],
        *,
        api_key: str = "rp-test-key",
        endpoint_id: str = "photogen-test",
        queue_seconds: float = 0.05,
    ):
        self.handler = handler
        self.api_key = api_key
        self.endpoint_id = endpoint_id
        self.queue_seconds = queue_seconds
        self.jobs: dict[str, FakeJob] = {}
        self.submissions: list[dict] = []
        self.cancels: list[str] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.fail_next = 0
        self.stall_next = 0
        self.time_out_next = 0
        self.rate_limit_next = 0
        self.retry_after: str | None = "0"
        self.status_errors_next = 0
        self.runsync_wait_seconds: float | None = None  # answer /runsync sooner than its ?wait= asks
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self.files: dict[str, bytes] = {}  # path -> a published file, served without the key
        self._server = LoopbackServer(self._respond)

    @property
    def api_base(self) -> str:
        return self._server.url + "/v2"

    def __enter__(self) -> FakeRunPod:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for job in list(self.jobs.values()):
            job.cancelled.set()  # a stalled job's thread ends with the fake
        self._server.stop()
        for thread in self._threads:
            thread.join(timeout=30)

    def publish(self, data: bytes, suffix: str = "png") -> str:
        """A file served at a URL of its own, without the key (a public endpoint's output)."""
        with self._lock:
            path = f"/files/{uuid.uuid4().hex}.{suffix}"
            self.files[path] = data
        return self._server.url + path

    def forget_finished(self) -> list[str]:
        """Results expire: RunPod keeps a /run result 30 minutes, a /runsync one 1 minute."""
        with self._lock:
            gone = [job_id for job_id, job in self.jobs.items() if job.status in ENDED]
            for job_id in gone:
                del self.jobs[job_id]
        return gone

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every job has ended (a stalled one never does: cancel it first)."""
        deadline = time.monotonic() + timeout
        for job in list(self.jobs.values()):
            if not job.ended.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"fake RunPod job {job.id} is still {job.status}")

    # --- HTTP

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(target)
        path = parts.path
        lowered = {name.lower(): value for name, value in headers.items()}
        if method == "GET" and path.startswith("/files/"):
            data = self.files.get(path)
            return (200, data, {"Content-Type": "image/png"}) if data else (404, b"not found", {"Content-Type": "text/plain"})
        self.seen.append((method, path, lowered))
        with self._lock:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
                return self._json(429, {"error": "too many requests (fake)"}, extra)
        if lowered.get("authorization") not in (f"Bearer {self.api_key}", self.api_key):
            return 401, b"Unauthorized", {"Content-Type": "text/plain"}
        segments = path.strip("/").split("/")
        if len(segments) < 3 or segments[0] != "v2":
            return self._json(404, {"error": "not found"})
        if segments[1] != self.endpoint_id:
            return self._json(404, {"error": f"endpoint {segments[1]} not found (fake)"})
        operation, rest = segments[2], segments[3:]
        if method == "POST" and operation in ("run", "runsync") and not rest:
            return self._submit(operation, body, parse_qs(parts.query))
        if method == "GET" and operation == "status" and len(rest) == 1:
            with self._lock:
                if self.status_errors_next > 0:
                    self.status_errors_next -= 1
                    return self._json(503, {"error": "service unavailable (fake)"})
            job = self.jobs.get(rest[0])
            if job is None:
                return self._json(404, {"error": "request does not exist"})
            return self._json(200, job.answer())
        if method == "POST" and operation == "cancel" and len(rest) == 1:
            job = self.jobs.get(rest[0])
            if job is None:
                return self._json(404, {"error": "request does not exist"})
            self.cancels.append(job.id)
            with self._lock:
                if job.status not in ENDED:
                    job.status = "CANCELLED"
                    job.cancelled.set()
                    job.ended.set()
            return self._json(200, {"id": job.id, "status": job.status})
        return self._json(404, {"error": f"no operation {method} {operation} (fake)"})

    def _submit(self, operation: str, body: bytes, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        if len(body) > (RUN_LIMIT if operation == "run" else RUNSYNC_LIMIT):
            return self._json(400, {"error": f"payload of {len(body)} bytes is too large (fake)"})
        try:
            request = json.loads(body)
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        if not isinstance(request, dict) or not isinstance(request.get("input"), dict):
            return self._json(400, {"error": "the body needs an input object"})
        with self._lock:
            prefix = "sync-" if operation == "runsync" else ""
            job = FakeJob(id=f"{prefix}{uuid.uuid4()}-u{next(self._counter)}", input=request["input"])
            for mode in ("fail", "stall", "time_out"):
                switch = f"{mode}_next"
                if getattr(self, switch) > 0:
                    setattr(self, switch, getattr(self, switch) - 1)
                    job.mode = mode
                    break
            self.jobs[job.id] = job
            self.submissions.append(request["input"])
        thread = threading.Thread(target=self._work, args=(job,), name=f"fake-runpod-{job.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        if operation == "run":
            return self._json(200, {"id": job.id, "status": "IN_QUEUE"})
        wait = max(1000, min(int((query.get("wait") or ["90000"])[0]), 300_000)) / 1000
        job.ended.wait(wait if self.runsync_wait_seconds is None else min(wait, self.runsync_wait_seconds))
        return self._json(200, job.answer())

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        return status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}

    # --- the worker

    def _work(self, job: FakeJob) -> None:
        if job.cancelled.wait(self.queue_seconds):
            return
        with self._lock:
            if job.status != "IN_QUEUE":
                return
            job.status = "IN_PROGRESS"
            job.delay_ms = max(1, round((time.monotonic() - job.submitted) * 1000))
        if job.mode == "stall":
            job.cancelled.wait()
            return
        started = time.monotonic()
        if job.mode == "time_out":
            self._end(job, "TIMED_OUT", started)
            return
        try:
            output = self.handler({"id": job.id, "input": json.loads(json.dumps(job.input))})
        except Exception as exc:  # as RunPod's SDK reports a handler's exception
            error = {"error_type": str(type(exc)), "error_message": str(exc), "error_traceback": traceback.format_exc()}
            self._end(job, "FAILED", started, error=json.dumps(error))
            return
        if job.mode == "fail":
            error = {
                "error_type": "<class 'torch.OutOfMemoryError'>",
                "error_message": "CUDA out of memory (fake)",
                "error_traceback": "Traceback (most recent call last): ... (fake)",
            }
            self._end(job, "FAILED", started, error=json.dumps(error))
        elif isinstance(output, dict) and "error" in output:
            output = dict(output)
            error = str(output.pop("error"))
            self._end(job, "FAILED", started, output=output or None, error=error)
        else:
            self._end(job, "COMPLETED", started, output=output)

    def _end(self, job: FakeJob, status: str, started: float, output: Any = None, error: str | None = None) -> None:
        with self._lock:
            if job.status in ENDED:  # cancelled meanwhile: the result is dropped
                return
            job.execution_ms = max(1, round((time.monotonic() - started) * 1000))
            job.status, job.output, job.error = status, output, error
            job.ended.set()
