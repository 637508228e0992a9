"""The operator YAML (``guard.yaml``), validated by pydantic. Reference: ``docs/guard-config.md``.

Scores, changes and tolerances are in the config's ``units``:

- ``replies``: what the chatbot says, on the reply judge's scale (+1 = a typical reply that holds
  the value, -1 = a typical reply that rejects it, 0 = neither; a change of 0.2 is a tenth of the way
  from one pole to the other). Needs a bundle whose catalog was measured on replies.
- ``survey``: the survey's scale (statement method: nats per token of first-person statements).
- ``auto`` (default): ``replies`` where the bundle has them, else ``survey``.

A target with only a direction asks for as much movement as the limits and protected values allow.
Every number must be finite.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Method = Literal["role", "sae", "guided", "vector", "pair", "adapter", "auto"]


Units = Literal["auto", "replies", "survey"]
OnInfeasible = Literal["error", "serve_plain"]
PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # also a metric label and part of a model id
MAX_SYSTEM_PROMPT_CHARS = 32_000  # beyond any context the embedded models have


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false are not numbers (``max_levers: true`` is an error, not 1), and a switch is
        true or false (``enabled: 1`` is an error, not true)."""
        if info.field_name is None or value is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        types = (annotation, *get_args(annotation))
        if isinstance(value, bool):
            if bool not in types and any(t in types for t in (int, float)):
                raise ValueError("expected a number, got true/false")
        elif bool in types and not any(t in types for t in (int, float, str)):
            raise ValueError(f"expected true or false, got {str(value)[:40]!r}; fix: write true or false")
        return value


class TargetSpec(_Strict):
    """One value to move."""

    direction: Literal["increase", "decrease"] | None = Field(
        default=None, description="Which way to move the value. Implied by 'change' or 'score' when those are set."
    )
    change: float | None = Field(
        default=None, ge=-10, le=10, description="Desired change in the config's units (signed)."
    )
    score: float | None = Field(
        default=None, ge=-10, le=10, description="Desired score; the change is score minus the unsteered baseline."
    )

    @model_validator(mode="after")
    def _one_goal(self) -> TargetSpec:
        if sum(x is not None for x in (self.direction, self.change, self.score)) != 1:
            raise ValueError("give exactly one of 'direction', 'change' or 'score'")
        if self.change == 0:
            raise ValueError("change: 0 asks for nothing; give a non-zero change, a direction, or protect the value")
        return self


class ProtectedSpec(_Strict):
    """A value that must not move more than ``tolerance`` (the config's units) as a side effect."""

    tolerance: float = Field(gt=0, le=10, description="Largest acceptable predicted |change|.")


class LimitsSpec(_Strict):
    """Caps on what a plan may use."""

    max_perplexity_ratio: float = Field(default=1.5, ge=1.0, description="Cap on an SAE lever's fluency cost.")
    max_unparseable_increase: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="Cap on how much a lever raises the share of unparseable yes/no answers over the unsteered "
        "model's.",
    )
    max_levers: int = Field(default=2, ge=1, le=4, description="Most levers combined in one plan.")
    max_client_edit: float = Field(
        default=100.0,
        gt=0,
        le=1e4,
        description="Largest |value| of a client's SAE feature edit (when client interventions are allowed).",
    )
    side_effect_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Penalty per unit of mean |change| of the other values (in noise units) when scoring plans.",
    )


class ProfileSpec(_Strict):
    """A named set of targets (the top-level targets form the 'default' profile)."""

    targets: dict[str, TargetSpec] = Field(default_factory=dict, description="Value name -> target.")
    protected: dict[str, ProtectedSpec] = Field(default_factory=dict, description="Value name -> tolerance.")
    on_infeasible: OnInfeasible = Field(
        default="error",
        description="When the planner refuses the profile: error "
        "(the config is refused, nothing is silently unsteered) or serve_plain (the "
        "profile is served unguarded, with a warning in the log and its plan).",
    )
    method: Method = Field(
        default="auto",
        description="Levers allowed: role, sae, guided (role prompts amplified "
        "by classifier-free guidance), vector (steering vectors), pair (a wording and a vector measured "
        "together), adapter (value adapters), or auto (any).",
    )


class AuditSpec(_Strict):
    """Value audits of every profile, in the background: reply audits (what the chatbot says, judged) where
    the bundle has a value judge, else survey audits (inventory items scored)."""

    enabled: bool = Field(default=True, description="Run audits at all.")
    kind: Literal["auto", "replies", "survey"] = Field(
        default="auto", description="replies (needs the bundle's judge), survey, or auto (replies where possible)."
    )
    prompts: str | None = Field(
        default=None, description="Reply audits: the operator's prompt set (JSONL); default the shipped test prompts."
    )
    prompts_per_audit: int = Field(default=4, ge=1, le=64, description="Reply audits: prompts per round.")
    max_new_tokens: int = Field(default=48, ge=8, le=512, description="Reply audits: tokens per reply.")
    min_pairs: int = Field(default=8, ge=2, description="Reply audits: pairs before an alarm may fire.")
    max_cpu_share: float = Field(
        default=0.25, gt=0, le=1, description="Audits wait so that they take at most this share of the time."
    )
    interval_seconds: float = Field(default=60.0, ge=0.05, le=86_400, description="Time between canary audits.")
    items_per_audit: int = Field(default=24, ge=2, description="Inventory items scored per audit.")
    values: list[str] | None = Field(
        default=None, min_length=1, description="Values audited; default (omit it): every value."
    )
    timeout_seconds: float = Field(default=120.0, ge=0.01, description="An audit slower than this is abandoned.")


class MonitorSpec(_Strict):
    """The live value monitor: a sampled share of served replies (in-process and proxy mode) judged on every
    value and for text quality off the request path, with sliding-window means and a drift alarm against
    the plan's forecast, measured against a lever-free reference profile's live replies."""

    enabled: bool = Field(
        default=True,
        description="Judge served replies (needs the bundle's value judge; "
        "without one the monitor is off and says so in the log).",
    )
    sample_rate: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Share of each profile's replies judged (systematic: every 1/rate-th reply).",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Replies waiting for the judge; beyond it replies are skipped and counted, never waited for.",
    )
    batch_size: int = Field(default=16, ge=1, le=256, description="Replies judged in one pass.")
    window: int = Field(
        default=200, ge=10, le=100_000, description="Replies per profile in the sliding window of the live means."
    )
    min_replies: int = Field(
        default=30,
        ge=5,
        description="Replies in both a profile's and the reference's window before the drift alarm may fire.",
    )
    reference_profile: str | None = Field(
        default="plain",
        description="A lever-free profile whose live replies "
        "are the unguarded reference of the drift alarm (the default 'plain' "
        "is used only where the config has it); none: no live reference.",
    )
    quality: Literal["text", "full"] = Field(
        default="text",
        description="text: empty, refusal, repetition, "
        "distinct bigrams, recited instruction (no model pass); full: also "
        "perplexity and relevance (three model passes per reply).",
    )
    expose_scores: bool = Field(
        default=False,
        description="Judge every reply on the request path and return "
        "its value scores in the response's 'causalguard' field (adds the judge's time "
        "to each request).",
    )
    log_interval_seconds: float = Field(
        default=60.0, ge=0.05, description="Judge failures are logged at most once per this interval (all are counted)."
    )


class MetricsSpec(_Strict):
    """Prometheus metrics (always also mounted at the server's /metrics)."""

    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port (standalone); None: mount it in your app.",
    )
    host: str = Field(default="127.0.0.1", description="Interface of the standalone metrics listener.")


class ApiKeySpec(_Strict):
    """One client key: an id for logs and the key's SHA-256 (never the key itself)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Names the key in logs, e.g. 'team-a'.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description='The key\'s SHA-256 in lower-case hex: printf %s "$KEY" | sha256sum'
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="This key's rate limit (bursts of up to this many); default: server.requests_per_minute_per_key.",
    )


class ServerSpec(_Strict):
    """The OpenAI-compatible server's limits (read at start-up; a reload does not resize the pool)."""

    max_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Requests generating at once: with batching, "
        "the rows of the shared decode loop; without, separate generate calls (keep it "
        "near the core count then).",
    )
    batching: bool = Field(
        default=True,
        description="Continuous batching (in-process mode): concurrent requests "
        "share one decode loop, joining and leaving as they start and finish, each row with its "
        "own levers, seed and stop strings.",
    )
    prefix_cache_tokens: int = Field(
        default=2048,
        ge=0,
        le=1_000_000,
        description="With batching: prompt tokens "
        "whose keys and values are kept so that later prompts sharing a prefix (the "
        "operator prompt, role levers) skip computing it; 0 turns it off. Memory: "
        "this many tokens' KV cache (SmolLM2-135M: 46 KB a token).",
    )
    max_queue: int = Field(default=16, ge=0, le=100_000, description="Requests waiting beyond that; more get 429.")
    max_tokens_limit: int = Field(
        default=256,
        ge=1,
        le=32_768,
        description="Largest max_tokens a client may ask for (at most the model's context).",
    )
    max_request_bytes: int = Field(default=65536, ge=1024, description="Larger bodies get 413.")
    max_prompt_tokens: int = Field(
        default=2048,
        ge=16,
        description="Longer conversations (after the chat template "
        "and role instructions) get 400 before they take a slot: a prefill cannot be "
        "cancelled midway, so this bounds how long one holds it.",
    )
    request_timeout_seconds: float = Field(
        default=120.0, ge=0.01, le=86_400, description="Generation is cancelled after this."
    )
    decode_stall_seconds: float = Field(
        default=30.0,
        ge=0.05,
        description="With batching: the watchdog calls the "
        "decode loop stuck (/readyz 503, causalguard_decode_loop_stuck 1) when it "
        "has had work this long without finishing a step.",
    )
    drain_timeout_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="SIGTERM waits this long for requests."
    )
    admin_token_env: str | None = Field(
        default="CAUSALGUARD_ADMIN_TOKEN", description="Env var holding the admin endpoint's bearer token."
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        max_length=1000,
        description="Client keys for /v1 "
        "(each request sends 'Authorization: Bearer <key>'; others get 401). Empty: "
        "anyone may call, which 'serve' allows on a loopback interface only.",
    )
    api_keys_file: str | None = Field(
        default=None,
        min_length=1,
        description="More client keys from a file (e.g. a mounted secret), one per line: '<id> <sha256> "
        "[requests_per_minute]', '#' starts a comment; relative to this config's folder; read at start and "
        "on every reload.",
    )
    api_keys_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="More client keys from this environment variable, in the api_keys_file format (entries on "
        "lines or separated by commas).",
    )
    requests_per_minute_per_key: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Rate limit of every client key (token bucket: bursts of up to this many, then this many a "
        "minute); a 429 with Retry-After past it. Without keys, all clients share one 'anonymous' bucket. "
        "Empty: no limit.",
    )
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without api_keys on a non-loopback interface (behind a gateway that authenticates clients).",
    )

    @field_validator("api_keys")
    @classmethod
    def _distinct_keys(cls, keys: list[ApiKeySpec]) -> list[ApiKeySpec]:
        for field in ("id", "sha256"):
            seen = [getattr(k, field) for k in keys]
            twice = sorted({x for x in seen if seen.count(x) > 1})
            if twice:
                raise ValueError(f"api_keys: the {field} {twice[0][:16]} is listed twice; every key needs its own")
        return keys


class UpstreamSpec(_Strict):
    """Proxy mode: replies come from an OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp,
    a hosted API) serving the same model; the guard plans role levers, composes them into the system
    message, and forwards. The local model is still loaded for planning checks and reply audits."""

    base_url: str = Field(
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="The upstream's API root, e.g. http://127.0.0.1:8080/v1."
    )
    model: str = Field(min_length=1, max_length=200, description="The model name the upstream expects.")
    api_key_env: str | None = Field(default=None, description="Env var holding the upstream's API key (never logged).")
    timeout_seconds: float = Field(default=60.0, ge=0.01, le=3600, description="Whole-request timeout (504 after it).")
    connect_timeout_seconds: float = Field(default=5.0, ge=0.01, le=600, description="Connection timeout.")
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries, with exponential backoff, of requests that "
        "could not connect or were answered 502/503 (then 503 or 502).",
    )
    max_connections: int = Field(default=16, ge=1, le=1024, description="Connection pool size.")
    health_interval_seconds: float = Field(
        default=5.0,
        ge=0.05,
        le=600,
        description="How often the guard probes the upstream's /models endpoint; /readyz answers 503 while it is down.",
    )
    lora_adapters: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="llama.cpp's server only: the adapter levers it loaded with --lora, in that order (adapter id "
        "0, 1, ...; files from 'causalguard levers export --format gguf-lora'). The planner may then plan them, "
        "and every request sends each adapter's scale in 'lora': its plan's adapter levers at their strength, "
        "all others at 0.",
    )

    control_vectors: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="llama.cpp's server only: vector levers by id, each with the API root of an upstream "
        "started with that lever's control vector ('causalguard levers export --format llama-cpp-cvec' prints "
        "the launch line; give it the same --lora list). The planner may then plan them, and a profile whose "
        "plan holds one is served, and audited, by that upstream.",
    )

    lora_models: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="vLLM (--enable-lora --lora-modules NAME=FOLDER) and other servers that pick an adapter by "
        "model name: adapter levers by id, each with the model name of its adapter ('causalguard levers export "
        "--format peft' writes the folders). The planner may then plan them (at scale 1: such servers do not "
        "scale adapters), and a request under a plan holding one names that model.",
    )

    @field_validator("lora_models")
    @classmethod
    def _model_names(cls, names: dict[str, str]) -> dict[str, str]:
        for lever_id, name in names.items():
            if not 0 < len(name) <= 200 or name.strip() != name:
                raise ValueError(f"lora_models: {lever_id}: {name[:60]!r} is not a model name")
        return names

    @field_validator("control_vectors")
    @classmethod
    def _api_roots(cls, routes: dict[str, str]) -> dict[str, str]:
        for lever_id, url in routes.items():
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                raise ValueError(f"control_vectors: {lever_id}: {url[:60]!r} is not an http(s) API root")
        return routes

    @field_validator("lora_adapters")
    @classmethod
    def _distinct_adapters(cls, ids: list[str]) -> list[str]:
        twice = sorted({x for x in ids if ids.count(x) > 1})
        if twice:
            raise ValueError(f"lora_adapters: {twice[0]} is listed twice; llama-server loads each adapter once")
        return ids


class GuardConfig(_Strict):
    """The whole operator file."""

    model: str = Field(
        default="smollm2-135m-instruct",
        min_length=1,
        max_length=500,
        pattern=r"^\S(.*\S)?$",
        description="Registry name, folder, .gguf or HF id.",
    )
    bundle: str = Field(
        default="builtin", pattern=r"\S", description="Bundle folder, or 'builtin' for the model's shipped bundle."
    )
    system_prompt: str | None = Field(
        default=None, max_length=MAX_SYSTEM_PROMPT_CHARS, description="The operator's own system prompt."
    )
    units: Units = Field(
        default="auto",
        description="Units of scores, changes and tolerances: replies, survey or "
        "auto (replies where the bundle has them).",
    )
    targets: dict[str, TargetSpec] = Field(default_factory=dict, description="The default profile's targets.")
    protected: dict[str, ProtectedSpec] = Field(
        default_factory=dict, description="The default profile's protected values."
    )
    method: Method = Field(
        default="auto",
        description="The default profile's levers: role, sae, guided, vector, pair, adapter or auto (any).",
    )
    on_infeasible: OnInfeasible = Field(
        default="error",
        description="The default profile's answer to a refusal by the planner: error or serve_plain (see profiles).",
    )
    profiles: dict[Annotated[str, Field(pattern=PROFILE_NAME)], ProfileSpec] = Field(
        default_factory=dict, description="Extra named profiles (names: letters, digits, '_', '-', '.'; 1-64)."
    )
    allow_client_interventions: bool = Field(
        default=False, description="Let server clients send their own SAE feature edits (off: profiles only)."
    )
    fallback_to_roles: bool = Field(
        default=True, description="Where SAE levers cannot run (remote models), plan with role levers instead."
    )
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="See `limits`.")
    audit: AuditSpec = Field(default_factory=AuditSpec, description="See `audit`.")
    monitor: MonitorSpec = Field(default_factory=MonitorSpec, description="See `monitor`.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="See `metrics`.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="See `server`.")
    upstream: UpstreamSpec | None = Field(
        default=None, description="See `upstream` (proxy mode); none: the local model generates."
    )

    def profile(self, name: str = "default") -> ProfileSpec:
        if name == "default":
            return ProfileSpec(
                targets=self.targets, protected=self.protected, method=self.method, on_infeasible=self.on_infeasible
            )
        return self.profiles[name]

    @property
    def profile_names(self) -> list[str]:
        return ["default", *self.profiles]
