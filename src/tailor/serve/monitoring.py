"""Monitoring reports as the server makes them: with the version's training fingerprint and its base encoder
(cached by the app's model cache, its texts' embeddings by the app's drift cache), for the monitoring route
and for the alert loop, which judges every model with rules (:mod:`tailor.monitor.alerts`)."""

from __future__ import annotations

from collections.abc import Callable

from tailor.catalog import CATALOG
from tailor.data.fingerprint import load_fingerprint
from tailor.monitor.alerts import window_reports
from tailor.monitor.config import MonitoringConfig
from tailor.monitor.report import version_report
from tailor.monitor.review import version_queue
from tailor.serve.models import NamedModel
from tailor.serve.recording import written_records


def drift_inputs(services, version) -> tuple[dict | None, Callable]:
    """``(the version's training fingerprint, an embed function for the drift test)``: the version's base
    encoder (see :mod:`tailor.monitor.drift` for why not its fine-tuned one), from the app's model cache on
    first use; the texts it embedded are kept in the app's drift cache. A base outside the catalog (a local
    directory) falls back to the version's own encoder."""
    base = CATALOG.get(version.base_model)
    named = (NamedModel(version.base_model, base=base) if base is not None and base.task == "classify"
             else NamedModel(version.ref, version=version))
    embed = services.drift_embeddings.embedder(named.cache_key,
                                               lambda texts: services.models.encoder(named).embed(texts)[0])
    return load_fingerprint(services.registry.artifact_dir(version)), embed


def report_of(services, version, hours: float, bucket_minutes: float) -> dict:
    """The monitoring report of a registered classifier ``version`` over the last ``hours``."""
    fingerprint, embed = drift_inputs(services, version)
    return version_report(written_records(services), services.feedback, version, hours, bucket_minutes,
                          fingerprint=fingerprint, embed=embed)


def queue_of(services, version, limit: int, hours: float) -> list[dict]:
    """The review queue of a registered classifier ``version`` (:func:`tailor.monitor.review.version_queue`)."""
    fingerprint, embed = drift_inputs(services, version)
    return version_queue(written_records(services), services.feedback, version, fingerprint=fingerprint,
                         embed=embed, limit=limit, hours=hours)


def reports_for(services, config: MonitoringConfig) -> dict[int, dict]:
    """The alert loop's reports of one model (:func:`tailor.monitor.alerts.window_reports`)."""
    return window_reports(written_records(services), services.registry.store, config,
                          lambda version, hours, bucket: report_of(services, version, hours, bucket))
