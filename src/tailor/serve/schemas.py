"""Request and response bodies of the API (OpenAI's shapes where OpenAI has the endpoint).

Response models describe exactly what the routes return, so the OpenAPI spec is a contract the tests
check (schemathesis validates every response against it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"]
    status_details: str | None
    expires_at: int | None
    kind: Literal["text-label", "chat", "texts"] = Field(
        description="Tailor: classification data, chat examples, or unlabelled texts (a job's "
                    "method.tailor.unlabeled_file)")
    summary: dict = Field(description="Tailor: rows, columns and label counts, or chat examples found")


class FileList(BaseModel):
    object: Literal["list"]
    data: list[FileObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobObject(BaseModel):
    object: Literal["fine_tuning.job"]
    id: str
    model: str
    created_at: int
    finished_at: int | None
    fine_tuned_model: str | None
    organization_id: str
    result_files: list[str]
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
    validation_file: str | None
    training_file: str | None
    hyperparameters: dict
    trained_tokens: int | None
    error: JobError | None
    user_provided_suffix: str | None
    seed: int
    estimated_finish: int | None
    integrations: list
    metadata: dict[str, str] | None
    method: dict
    task: Literal["classification", "chat"] = Field(description="Tailor: what the model learns")
    result: dict | None = Field(description="Tailor: metrics, timings and the registered version")


class JobList(BaseModel):
    object: Literal["list"]
    data: list[JobObject]
    has_more: bool


class EventObject(BaseModel):
    object: Literal["fine_tuning.job.event"]
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict
    type: Literal["message", "metrics"]


class EventList(BaseModel):
    object: Literal["list"]
    data: list[EventObject]
    has_more: bool


class CheckpointObject(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"]
    id: str
    created_at: int
    fine_tuning_job_id: str
    fine_tuned_model_checkpoint: str
    step_number: int
    metrics: dict


class CheckpointList(BaseModel):
    object: Literal["list"]
    data: list[CheckpointObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    task: str = Field(description="Tailor: classify or chat")
    base_model: str | None = Field(description="Tailor: the catalog base a fine-tuned model came from")
    version: int | None = Field(description="Tailor: the registry version the id resolves to")
    aliases: list[str] = Field(description="Tailor: the registry aliases of that version")
    description: str | None = Field(description="Tailor: one line on a catalog base")


class ModelStatus(BaseModel):
    id: str
    object: Literal["model.status"]
    state: Literal["not_loaded", "loading", "ready", "evicted", "errored"] = Field(
        description="the model's lifecycle in this server's inference cache")
    kind: str | None = Field(description="classifier, head, lora, chat or encoder once loaded")
    runtime: str | None = Field(description="the classification runtime in use (torch-fp32, onnx-fp32, onnx-int8)")
    load_seconds: float | None = Field(description="how long its last load took")
    loads: int = Field(description="times it was loaded (again after an eviction)")
    own_bytes: int = Field(description="memory its weights hold alone; a shared base is not counted")
    error: str | None = Field(description="why its last load failed (state errored)")
    serving: dict | None = Field(description="the accuracy gate's record: the runtime chosen and every runtime's "
                                             "validation macro-F1 (classification versions)")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


VersionNumber = Annotated[int, Field(ge=1, le=2**31 - 1)]
Reason = Annotated[str | None, Field(max_length=1000, description="why: kept with the change in the alias history")]
Override = Annotated[StrictBool, Field(description="let a version that fails the tenant's release gate through "
                                                "(admin scope, with a reason; recorded in the alias history)")]


class AliasSet(_Strict):
    version: VersionNumber = Field(..., description="the version number the alias is to point at (a move ends "
                                                    "any canary or shadow)")
    reason: Reason = None
    override: Override = False


class CanarySet(_Strict):
    version: VersionNumber = Field(..., description="the candidate: a version other than the alias's")
    share: float = Field(..., gt=0, lt=1, description="the fraction of the alias's requests the candidate answers, "
                                                      "sticky by the request's user or X-Tailor-Route-Key")
    reason: Reason = None
    override: Override = False


class ShadowSet(_Strict):
    version: VersionNumber = Field(..., description="the candidate classifier: it predicts on a copy of every "
                                                    "request, recorded, never returned")
    reason: Reason = None


class PromoteRequest(_Strict):
    version: VersionNumber | None = Field(None, description="the version to move to (default: the candidate)")
    reason: Reason = None
    override: Override = False


class ReasonOnly(_Strict):
    reason: Reason = None


class CandidateObject(BaseModel):
    version: int
    mode: Literal["canary", "shadow"]
    share: float | None = Field(description="the canary's share of requests; null for a shadow")


class AliasObject(BaseModel):
    object: Literal["model.alias"]
    model: str = Field(description="the model's name")
    alias: str
    version: int = Field(description="the version the alias points at")
    candidate: CandidateObject | None = Field(description="the version tried out beside it (canary or shadow)")


class AliasEventObject(BaseModel):
    alias: str
    version: int | None = Field(description="the version the alias pointed at from then on; null once removed")
    action: Literal["set", "unset", "version_deleted", "canary", "shadow", "abort", "promote", "rollback"] = Field(
        description="set (or moved), unset on request, removed with the version it pointed at; a canary or shadow "
                    "started, stopped (abort), promoted, or rolled back to the version before the last move")
    candidate: CandidateObject | None = Field(description="the candidate from then on (canary and shadow events)")
    actor: str | None = Field(description="who: <tenant>/<key name> (<key id>) or cli:<os user>")
    reason: str | None
    created_at: int


class AliasList(BaseModel):
    object: Literal["list"]
    model: str = Field(description="the model's name")
    data: list[AliasObject] = Field(description="the aliases now, by name")
    history: list[AliasEventObject] = Field(description="every change, oldest first")


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is not None:
        if len(value) > 16:
            raise ValueError(f"at most 16 pairs, got {len(value)}")
        for key, text in value.items():
            if not 1 <= len(key) <= 64:
                raise ValueError(f"key {key[:70]!r}: 1 to 64 characters")
            if len(text) > 512:
                raise ValueError(f"value of {key!r}: at most 512 characters, got {len(text)}")
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_check_metadata),
                     Field(description="up to 16 string pairs (keys up to 64 characters, values up to 512) kept "
                                       "with the request's records, to filter stored completions by")]
Store = Annotated[bool | None, Field(description="keep the input with the request's records (for review, feedback, "
                                                 "the drift test and OpenAI's stored completions); left out, the "
                                                 "model's monitoring setting store_inputs decides (off by default); "
                                                 "statistics are recorded either way")]


class _Recorded(_Strict):
    store: Store = None
    metadata: Metadata = None


Text = Annotated[str, Field(min_length=1, pattern=r"\S", description="a text with at least one non-space character")]
Texts = Text | Annotated[list[Text], Field(min_length=1, max_length=2048)]


class ClassificationRequest(_Recorded):
    model: str = Field(..., min_length=1, max_length=300, description="a fine-tuned classifier's id or reference")
    input: Texts = Field(..., description="a text or up to 2,048 texts")
    abstain: bool | None = Field(None, description="true: leave texts whose top probability is below the "
                                                   "version's suggested abstain threshold unanswered (label null)")
    abstain_threshold: float | None = Field(None, ge=0, le=1, description="abstain below this top probability "
                                                                          "(0..1) instead of the suggested one")
    user: str | None = Field(None, max_length=256, description="the end user (OpenAI's field); during a canary it "
                                                               "keeps them on one version")
    explain: bool | Literal["all"] | None = Field(
        None, description="true: each result gains \"explanation\", every word's weight for the predicted label "
                          "(word-level occlusion on the serving runtime); \"all\": also \"explanations\", the "
                          "weights for every label; at most 32 texts per request")


class ExplainedToken(BaseModel):
    token: str = Field(description="the word (a Chinese character; a span of words in a text of over 64 words)")
    start: int = Field(description="its first character's offset in the input text")
    end: int = Field(description="the offset just past it: input[start:end] == token")
    weight: float = Field(description="the label's probability minus its probability without this token")


class ClassificationResult(BaseModel):
    id: str = Field(description="this answer's prediction id (for feedback)")
    index: int
    label: str | None = Field(description="the most probable label; null when the text was abstained on")
    score: float = Field(description="the top label's probability")
    scores: dict[str, float]
    abstained: bool | None = Field(None, description="present when abstention was asked for")
    reason: str | None = Field(None, description="why the text was abstained on")
    explanation: list[ExplainedToken] | None = Field(
        None, description="with \"explain\": each token's weight for the predicted label, in text order")
    explanations: dict[str, list[ExplainedToken]] | None = Field(
        None, description="with \"explain\": \"all\": each token's weight for every label")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ClassificationResponse(BaseModel):
    id: str = Field(description="the request's id")
    object: Literal["list"]
    model: str
    data: list[ClassificationResult]
    usage: Usage
    abstain_threshold: float | None = Field(None, description="the threshold applied, when abstention was asked for")


class EmbeddingRequest(_Recorded):
    model: str = Field(..., min_length=1, max_length=300)
    input: Texts = Field(..., description="a text or up to 2,048 texts (token arrays are not supported)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="must equal the model's dimension if given")
    user: str | None = Field(None, max_length=256)


class EmbeddingObject(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: Literal["ok", "error"]
    workers: dict | None
    models_loaded: int


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(..., description="text, or a list of text parts")
    name: str | None = Field(None, max_length=64)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Recorded):
    model: str = Field(..., min_length=1, max_length=300, description="a chat base or a fine-tuned chat model")
    temperature: float = Field(1.0, ge=0, le=2, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    user: str | None = Field(None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=4096, description="deprecated by OpenAI; max_completion_tokens")
    max_completion_tokens: int | None = Field(None, ge=1, le=4096, description="most new tokens (default 256)")


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        ..., description="one prompt (a string, or a list holding one string)")
    max_tokens: int = Field(16, ge=1, le=4096)
    echo: bool = Field(False, description="put the prompt in front of the completion")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class StoredChatCompletion(ChatCompletion):
    metadata: dict[str, str] | None = None


class StoredChatCompletionList(BaseModel):
    object: Literal["list"]
    data: list[StoredChatCompletion]
    first_id: str | None
    last_id: str | None
    has_more: bool


class MetadataUpdate(_Strict):
    metadata: Metadata = Field(..., description="the new metadata (replaces the old; null clears it)")


class StoredMessage(BaseModel):
    id: str
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class StoredMessageList(BaseModel):
    object: Literal["list"]
    data: list[StoredMessage]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class FeedbackItem(_Strict):
    prediction_id: str | None = Field(None, max_length=40, description="a classification answer's id (pred-...)")
    label: str | None = Field(None, min_length=1, max_length=200, description="its true label")
    completion_id: str | None = Field(None, max_length=40, description="a (chat) completion's id")
    rating: Literal["up", "down"] | None = None
    correction: str | None = Field(None, min_length=1, max_length=100_000, description="the answer it should have "
                                                                                        "given")

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.prediction_id is None) == (self.completion_id is None):
            raise ValueError("give either prediction_id (with label) or completion_id (with rating and/or correction)")
        if self.prediction_id is not None and (self.label is None or self.rating or self.correction):
            raise ValueError("a prediction's feedback is its label (and nothing else)")
        if self.completion_id is not None and self.label is not None:
            raise ValueError("a completion's feedback is a rating and/or a correction, not a label")
        return self


class FeedbackObject(BaseModel):
    id: str
    object: Literal["feedback"]
    created_at: int
    prediction_id: str | None = None
    label: str | None = None
    completion_id: str | None = None
    rating: Literal["up", "down"] | None = None
    correction: str | None = None


class FeedbackList(BaseModel):
    object: Literal["list"]
    data: list[FeedbackObject]


class FeedbackImport(BaseModel):
    object: Literal["feedback.import"]
    rows: int
    data: list[FeedbackObject]


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class MonitoringWindow(BaseModel):
    start: str
    end: str
    hours: float


class MonitoringTotals(BaseModel):
    requests: int
    answers: int
    abstained: int
    prompt_tokens: int
    latency_ms: Percentiles
    errors: int = Field(description="requests that failed on the server's side (5xx) once the model was known")
    client_errors: int = Field(description="requests refused (4xx) once the model was known")


class LabelMix(BaseModel):
    served: dict[str, float]
    training: dict[str, float]
    distance: float | None = Field(description="total variation distance between the two (0 same, 1 disjoint)")


class Confidence(BaseModel):
    mean: float | None
    histogram: list[int] = Field(description="answers per tenth of calibrated top probability, 0-0.1 first")


class Estimated(BaseModel):
    rows: int
    accuracy: float | None
    macro_f1: float | None
    temperature: float
    calibrated: bool


class Measured(BaseModel):
    rows: int
    accuracy: float | None
    macro_f1: float | None
    estimated_accuracy: float | None = Field(description="the estimate on the same labelled answers")


class MonitoringBucket(BaseModel):
    start: str
    requests: int
    answers: int
    failed: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    labels: dict[str, float] = Field(description="the served label mix of the bucket's answers (shares)")
    confidence_mean: float | None = Field(description="mean calibrated top probability")
    estimated_accuracy: float | None
    estimated_macro_f1: float | None
    measured_rows: int = Field(description="the bucket's answers with a feedback label")
    measured_accuracy: float | None = Field(description="accuracy on those answers")
    chars_mean: float | None = Field(description="the mean length of the bucket's input texts, in characters")
    unknown_token_rate: float | None = Field(description="the share of the bucket's input tokens the tokenizer "
                                                         "did not know")


class MonitoringReport(BaseModel):
    object: Literal["model.monitoring"]
    model: str
    window: MonitoringWindow
    bucket_minutes: float
    totals: MonitoringTotals
    labels: LabelMix
    confidence: Confidence
    estimated: Estimated
    measured: Measured
    drift: dict = Field(description="input drift against the version's training texts: a verdict (drift, no_drift, "
                                    "insufficient_data) with its reasons, and the embedding, length, language and "
                                    "unknown-token tests (see tailor.monitor.drift)")
    buckets: list[MonitoringBucket]


Verdict = Literal["b_better", "a_better", "no_significant_difference"]


class CompareRequest(_Strict):
    a: str = Field(description="the version served now, e.g. sentiment@prod", min_length=1, max_length=300)
    b: str = Field(description="the candidate, e.g. sentiment:3", min_length=1, max_length=300)
    file: str | None = Field(None, description="an uploaded text/label file's id (POST /v1/files) to compare on")
    feedback: bool = Field(True, description="also compare on the stored served texts that have a feedback label")


class ComparedVersion(BaseModel):
    ref: str = Field(description="the reference as given")
    model: str = Field(description="the version it resolved to (name:version)")
    runtime: str = Field(description="the runtime it is served with, which predicted the rows")


class ScorePair(BaseModel):
    accuracy: float | None
    macro_f1: float | None


class Disagreements(BaseModel):
    rows: int
    b_right_a_wrong: int
    a_right_b_wrong: int
    both_wrong: int


class AccuracyTest(BaseModel):
    test: Literal["mcnemar_exact"]
    p_value: float | None = Field(description="two-sided exact binomial test on the rows only one gets right")
    verdict: Verdict


class MacroF1Test(BaseModel):
    test: Literal["paired_bootstrap"]
    level: float
    resamples: int
    interval: list[float] | None = Field(description="[low, high] of B's macro-F1 minus A's")
    verdict: Verdict


class ClassScores(BaseModel):
    precision: float
    recall: float
    f1: float


class ClassComparison(BaseModel):
    label: str
    support: int
    a: ClassScores
    b: ClassScores
    f1_difference: float


class ComparisonSection(BaseModel):
    source: Literal["file", "feedback"]
    data: str | None = Field(description="the file's name (file source)")
    skipped_rows: int = Field(description="rows without a text or label (file), or with a label the versions do "
                                          "not know (feedback)")
    rows: int
    a: ScorePair
    b: ScorePair
    difference: ScorePair = Field(description="B minus A")
    disagreements: Disagreements
    accuracy_test: AccuracyTest
    macro_f1_test: MacroF1Test
    verdict: Verdict
    per_class: list[ClassComparison]


class ComparisonReport(BaseModel):
    object: Literal["model.comparison"]
    a: ComparedVersion
    b: ComparedVersion
    labels: list[str]
    file: ComparisonSection | None
    feedback: ComparisonSection | None


class ChatMonitoringReport(BaseModel):
    object: Literal["model.monitoring"]
    task: Literal["chat"]
    model: str
    window: MonitoringWindow
    bucket_minutes: float
    totals: dict = Field(description="requests, answers, prompt/completion tokens, latency percentiles, and "
                                     "answers empty, declined (refusals), cut at the token limit or unfinished")
    feedback: dict = Field(description="answers rated, up, down, and corrected answers")
    buckets: list[dict]


class MonitoringConfigSet(_Strict):
    store_inputs: bool = Field(False, description="keep the input of every answer whose request does not say "
                                                  "\"store\" (texts feed the drift test and the review queue)")
    window_hours: float = Field(1.0, description="the window each rule is judged on, in hours")
    rules: list[dict] = Field(default_factory=list, max_length=20, description=(
        "alert rules: {\"metric\", \"op\" (<, <=, >, >=), \"threshold\", \"min_answers\" (30)}; metrics: "
        "estimated_accuracy, estimated_macro_f1, measured_accuracy, input_drift, drift_auc, label_distance, "
        "error_rate, latency_p95_ms, answers"))
    webhook_url: str | None = Field(None, max_length=2000, description="alerts are POSTed here as JSON")


class MonitoringConfigObject(BaseModel):
    object: Literal["model.monitoring_config"]
    model: str
    store_inputs: bool
    window_hours: float
    rules: list[dict]
    webhook_url: str | None
    updated_at: int | None


class AlertObject(BaseModel):
    id: str
    object: Literal["alert"]
    model: str
    rule: str
    value: float | None
    state: Literal["firing", "resolved"]
    fired_at: int
    resolved_at: int | None
    delivery: Literal["none", "pending", "delivered", "failed"]
    attempts: int
    last_error: str | None


class AlertList(BaseModel):
    object: Literal["list"]
    data: list[AlertObject]


class MethodEstimate(BaseModel):
    method: str = Field(description="full, lora, head, or chat-lora")
    total_s: float = Field(description="estimated seconds for the whole job")
    stages: dict[str, float] = Field(description="seconds per stage, in the job's order (data, train, validation, "
                                                 "test, explain, gate, save)")
    epochs: int = Field(description="epochs (full, lora, chat) or head steps (head) the train stage counts")
    trials: int


class JobEstimate(BaseModel):
    object: Literal["fine_tuning.job.estimate"]
    model: str
    task: Literal["classification", "chat"]
    method: str = Field(description="the method asked for, or the one auto would choose")
    method_reason: str
    auto_method: str = Field(description="what method auto would choose")
    auto_reason: str
    estimates: dict[str, MethodEstimate] = Field(description="per method: full, lora and head (classification) "
                                                             "or lora (chat)")
    hyperparameters: dict = Field(description="n_epochs, batch_size and learning_rate_multiplier, auto resolved")
    rows: dict[str, int] = Field(description="rows (conversations) for training, validation and test")
    labels: int | None = Field(description="classes (classification)")


ScopeName = Literal["read", "train", "deploy", "admin"]


class KeyCreate(_Strict):
    name: str = Field(..., min_length=1, max_length=100, description="what the key is for, shown in listings")
    scopes: list[ScopeName] = Field(..., min_length=1, max_length=4, description="read, train, deploy, admin")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="the key stops working this many days "
                                                                         "from now; null: until revoked")


class KeyObject(BaseModel):
    id: str
    object: Literal["api_key"]
    name: str
    prefix: str = Field(description="the secret's first characters, to recognise it by")
    scopes: list[ScopeName]
    created_at: int
    last_used_at: int | None = Field(description="to the minute; null if never used")
    revoked_at: int | None
    expires_at: int | None = Field(description="when the key stops working; null: until revoked")


class KeyCreated(KeyObject):
    secret: str = Field(description="the key itself: shown this once, never again")


class KeyList(BaseModel):
    object: Literal["list"]
    data: list[KeyObject] = Field(description="the tenant's keys, oldest first, revoked ones included")


class AuditEvent(BaseModel):
    object: Literal["audit.event"]
    seq: int = Field(description="the row's place in the chain (1, 2, ... over every tenant)")
    tenant: str | None
    actor: str = Field(description="an API key id, console:<key id>, cli:<os user>, or anonymous")
    action: str = Field(description="the method and route template (POST /v1/files), or a CLI verb (models alias)")
    target: dict[str, str | int | float | bool | None] = Field(description="the ids acted on (the path's parameters)")
    client: str | None = Field(description="the caller's address (X-Forwarded-For only from a trusted proxy)")
    result: str = Field(description="the HTTP status, or ok / error for the CLI")
    error: str | None = Field(description="why it was refused or failed")
    at: str = Field(description="when, ISO 8601 in UTC with microseconds (as hashed)")
    prev_hash: str
    hash: str = Field(description="SHA-256 of prev_hash + the canonical JSON of the fields above")


class AuditList(BaseModel):
    object: Literal["list"]
    data: list[AuditEvent] = Field(description="newest first")
    has_more: bool = Field(description="older rows remain: ask again with after=<the last seq>")


class ModelUsage(BaseModel):
    model: str = Field(description="the registered model's name or the base's id")
    kind: Literal["classification", "embedding", "chat.completion", "text_completion", "error"]
    requests: int
    answers: int = Field(description="answers given (a classification request answers each text; shadow "
                                     "copies count)")
    prompt_tokens: int
    completion_tokens: int


class JobUsage(BaseModel):
    created: int = Field(description="jobs created in the window")
    by_status: dict[str, int]
    finished: int = Field(description="of those, jobs that ran and finished")
    run_seconds: float = Field(description="their time from start to finish, summed")


class FileUsage(BaseModel):
    count: int
    bytes: int


class StoredModelUsage(BaseModel):
    models: int
    versions: int
    bytes: int = Field(description="bytes of the versions' artifact directories")


class UsageReport(BaseModel):
    object: Literal["usage"]
    days: int
    since: int
    until: int
    recording: bool = Field(description="whether the server records answers; off: models is empty")
    records_kept_days: int = Field(description="records older than this are pruned, so the window sees at "
                                               "most these days")
    models: list[ModelUsage] = Field(description="from the prediction records in the window, by model")
    jobs: JobUsage
    files: FileUsage = Field(description="uploaded files stored now")
    stored_models: StoredModelUsage = Field(description="fine-tuned models stored now")


class QuotaLimits(BaseModel):
    rpm: int = Field(description="requests per minute of the tenant, all keys together (0: unlimited)")
    key_rpm: int = Field(description="requests per minute of each API key (0: unlimited)")
    jobs: int = Field(description="fine-tuning jobs queued or running at once (0: unlimited)")
    storage_mb: int = Field(description="MiB of uploaded files kept (0: unlimited)")
    train_minutes: int = Field(description="minutes of job run time per UTC day (0: unlimited)")


class QuotaUsage(BaseModel):
    rpm: float | None = Field(description="the tenant's request tokens spent (refilled at rpm per minute)")
    key_rpm: float | None = Field(description="the calling key's request tokens spent")
    jobs: int = Field(description="jobs queued or running now")
    storage_mb: float
    storage_bytes: int
    train_minutes: float = Field(description="minutes the tenant's jobs ran today (UTC)")


class QuotaReport(BaseModel):
    object: Literal["quota"]
    tenant: str
    limits: QuotaLimits
    usage: QuotaUsage
    redact_pii: bool = Field(description="personal data is replaced by placeholders before training and before "
                                         "inputs are stored")


GateThreshold = Annotated[StrictFloat, Field(ge=0, le=1)]  # a number (never a boolean) from 0 to 1


class ReleaseGateSet(_Strict):
    min_accuracy: GateThreshold | None = Field(None, description="the lowest test accuracy a released version has")
    min_macro_f1: GateThreshold | None = Field(None, description="the lowest test macro-F1")
    max_slice_gap: GateThreshold | None = Field(None, description="the largest accuracy gap between slices of its "
                                                                  "latest bias report")
    max_flip_rate: GateThreshold | None = Field(None, description="the highest counterfactual flip rate")
    require_fairness: StrictBool = Field(False, description="a version must have a bias report with a slice column")


class ReleaseGateObject(ReleaseGateSet):
    model_config = ConfigDict(extra="ignore")
    object: Literal["release_gate"]
    tenant: str
    active: bool = Field(description="whether the gate checks anything")


class EvaluationRequest(_Strict):
    file: str = Field(description="an uploaded text/label file's id (POST /v1/files) to evaluate on",
                      min_length=1, max_length=64)
    slice_column: str | None = Field(None, min_length=1, max_length=200,
                                     description="score each slice of this column of the file (region, gender...)")
    positive_label: str | None = Field(None, min_length=1, max_length=200,
                                       description="the positive class of a binary task (default: the minority "
                                                   "class of the file's labels)")
    counterfactual: StrictBool = Field(False, description="swap protected terms (he/she, names, ethnic and regional "
                                                    "terms; English and Chinese) and count changed predictions")


class SliceRow(BaseModel):
    column: str | None
    value: str
    n: int
    accuracy: float
    accuracy_ci: list[float] = Field(description="Wilson 95% interval of the accuracy")
    macro_f1: float
    positive_rate: float | None
    true_positive_rate: float | None
    gap: float | None = Field(description="slices: the best judgeable slice's accuracy minus this one's; worst "
                                          "slices: the other rows' accuracy minus this one's")
    too_small: bool
    rest_accuracy: float | None = None
    significant: bool | None = None


class CounterfactualExample(BaseModel):
    line: int
    text: str
    swapped: str
    swaps: list[str]
    predicted: str
    swapped_predicted: str


class CounterfactualResult(BaseModel):
    checked: int = Field(description="texts with at least one protected term")
    flipped: int = Field(description="of those, the ones whose predicted label changed when the terms were swapped")
    flip_rate: float | None
    by_group: dict[str, dict[str, int]]
    examples: list[CounterfactualExample]


class FairnessReport(BaseModel):
    object: Literal["model.evaluation"]
    model: str = Field(description="the version evaluated (name:version)")
    rows: int
    accuracy: float
    macro_f1: float
    data: str = Field(description="the file's sha256")
    created_at: str
    slice_column: str | None
    metric: Literal["accuracy"]
    min_rows: int = Field(description="slices with fewer rows are too small to judge and left out of the gaps")
    positive_label: str | None
    positive_label_from: Literal["given", "minority"] | None
    largest_gap: float | None
    equal_opportunity: float | None
    slices: list[SliceRow]
    worst_slices: list[SliceRow]
    counterfactual: CounterfactualResult | None
