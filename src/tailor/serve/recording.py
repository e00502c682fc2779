"""Served answers as prediction records (:mod:`tailor.monitor.records`), handed to the app's recorder, which
writes them off the request path. With recording off (``TAILOR_RECORD_PREDICTIONS=false``) nothing is kept
and ids are still given."""

from __future__ import annotations

import time

from tailor.monitor.records import PredictionRecord, PredictionStore
from tailor.serve.models import NamedModel


class Recording:
    """One request's records: who asked, for which model, since when.

    Args:
        services: the app's services (its recorder may be None: recording off).
        tenant: the caller's tenant.
        model: the model id the client sent.
        named: what it resolved to.
        body: the request (its ``store`` and ``metadata``).
    """

    def __init__(self, services, tenant: str, model: str, named: NamedModel, body, started: float):
        self.recorder = services.recorder
        self.store, self.metadata = body.store, body.metadata
        self.started = started
        self.common = {"tenant": tenant, "model": model}
        if named.version is not None:
            self.common.update(model_name=named.version.name, version=named.version.version)
        else:
            self.common.update(model_name=named.base.id, version=None)

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


def written_records(services) -> PredictionStore:
    """The records' store, once the records waiting to be written are: an answer given a moment ago is found.
    Routes that read it are plain ``def``, so FastAPI runs them, database reads and all, off the event loop."""
    if services.recorder is not None:
        services.recorder.flush()
    return services.predictions
