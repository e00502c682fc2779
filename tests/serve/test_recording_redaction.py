"""Stored inputs and completions of a tenant whose redact_pii switch is on reach the database redacted; another
tenant's are kept as given; the switch turns off again."""

from __future__ import annotations

from tailor.monitor.recorder import Recorder
from tailor.monitor.records import PredictionRecord, PredictionStore, new_id
from tailor.security.quotas import QuotaStore

from api_helpers import publish_copy

TEXT = "Refund to ann@corp.com, card 4111 1111 1111 1111, call +1 415 555 2671"
REDACTED = "Refund to [EMAIL], card [CARD], call [PHONE]"


def _stored(app, tenant: str, record_id: str):
    services = app.state.services
    services.recorder.flush()
    return services.predictions.get(tenant, record_id)


def test_a_redacting_tenants_stored_inputs_are_redacted(app, client, settings, head_artifact, acme, globex):
    quotas = QuotaStore(settings.registry_url)
    quotas.set("acme", redact_pii=True)
    for tenant in ("acme", "globex"):
        publish_copy(settings, head_artifact, tenant, "sentiment")
    ids = {}
    for tenant in (acme, globex):
        body = client.post("/v1/classifications", headers=tenant.headers,
                           json={"model": "sentiment", "input": [TEXT, "no personal data"], "store": True}).json()
        ids[tenant.name] = [item["id"] for item in body["data"]]
    assert _stored(app, "acme", ids["acme"][0]).input == {"text": REDACTED}
    assert _stored(app, "acme", ids["acme"][1]).input == {"text": "no personal data"}
    assert _stored(app, "globex", ids["globex"][0]).input == {"text": TEXT}

    quotas.set("acme", redact_pii=False)
    body = client.post("/v1/classifications", headers=acme.headers,
                       json={"model": "sentiment", "input": TEXT, "store": True}).json()
    assert _stored(app, "acme", body["data"][0]["id"]).input == {"text": TEXT}


def test_the_recorder_redacts_messages_prompts_and_completions(db_url, settings):
    store = PredictionStore(db_url)
    recorder = Recorder(store, lambda tenant: (30, 1000), redacting=lambda: {"acme"})
    chat = PredictionRecord(id=new_id("chat.completion"), tenant="acme", kind="chat.completion", model="m",
                            model_name="m", version=1, output="Sure, I wrote to ann@corp.com.",
                            input={"messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": "my SSN is 123-45-6789"}]})
    prompt = PredictionRecord(id=new_id("text_completion"), tenant="acme", kind="text_completion", model="m",
                              model_name="m", version=1, output=None, input={"prompt": "IBAN DE89370400440532013000"})
    other = PredictionRecord(id=new_id("text_completion"), tenant="globex", kind="text_completion", model="m",
                             model_name="m", version=1, output="ann@corp.com", input={"prompt": "call 555-123-4567"})
    recorder.add([chat, prompt, other])
    assert recorder.flush() == 3
    written = store.get("acme", chat.id)
    assert written.input == {"messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "my SSN is [ID]"}]}
    assert written.output == "Sure, I wrote to [EMAIL]."
    assert store.get("acme", prompt.id).input == {"prompt": "IBAN [IBAN]"}
    kept = store.get("globex", other.id)
    assert (kept.input, kept.output) == ({"prompt": "call 555-123-4567"}, "ann@corp.com")
