"""Served answers as prediction records (:mod:`tailor.monitor.records`), handed to the app's recorder, which
writes them off the request path. With recording off (``TAILOR_RECORD_PREDICTIONS=false``) nothing is kept
and ids are still given."""

from __future__ import annotations

import contextlib
import time

from tailor.monitor.records import PredictionRecord, PredictionStore, new_id
from tailor.serve.errors import status_of
from tailor.serve.models import NamedModel


class Recording:
    """One request's records: who asked, for which model, since when.

    Args:
        services: the app's services (its recorder may be None: recording off).
        tenant: the caller's tenant.
        model: the model id the client sent.
        named: what it resolved to.
        body: the request (its ``store``, else the model's ``store_inputs`` setting, and ``metadata``).
    """

    def __init__(self, services, tenant: str, model: str, named: NamedModel, body, started: float):
        self.recorder = services.recorder
        self.metadata, self.started = body.metadata, started
        self.common = {"tenant": tenant, "model": model}
        if named.version is not None:
            self.common.update(model_name=named.version.name, version=named.version.version)
        else:
            self.common.update(model_name=named.base.id, version=None)
        self.store = body.store
        if self.store is None and self.recorder is not None:  # left to the model's setting (bases have none)
            self.store = named.version is not None and services.monitor_configs.store_inputs(tenant, named.version.name)

    def latency_ms(self) -> float:
        return round(1000 * (time.perf_counter() - self.started), 3)

    def add(self, kind: str, answers: list[dict]) -> None:
        """Record one answer per dict of :class:`PredictionRecord` fields (``id``, ``input``, the answer's own
        fields); ``input`` is dropped unless the request asked to store it."""
        if self.recorder is None:
            return
        latency = self.latency_ms()
        records = []
        for answer in answers:
            if not self.store:
                answer = {**answer, "input": None}
            records.append(PredictionRecord(kind=kind, latency_ms=latency, metadata=self.metadata, **self.common,
                                            **answer))
        self.recorder.add(records)


    @contextlib.contextmanager
    def failures(self):
        """Record an exception raised in the block as a failed request (kind ``error``, its HTTP status and
        message in ``details``; monitoring counts them), then let it go on to the client."""
        try:
            yield
        except Exception as exc:
            if self.recorder is not None:
                self.recorder.add([PredictionRecord(
                    id=new_id("error"), kind="error", latency_ms=self.latency_ms(), metadata=self.metadata,
                    details={"status": status_of(exc), "message": str(exc)[:500]}, **self.common)])
            raise


def written_records(services) -> PredictionStore:
    """The records' store, once the records waiting to be written are: an answer given a moment ago is found.
    Routes that read it are plain ``def``, so FastAPI runs them, database reads and all, off the event loop."""
    if services.recorder is not None:
        services.recorder.flush()
    return services.predictions
