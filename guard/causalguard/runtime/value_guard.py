"""``ValueGuard``: a Hugging Face chat model with value targets, predicted side effects and live audits.

    guard = ValueGuard.from_config("guard.yaml")          # or ValueGuard(model, tokenizer, config)
    print(guard.explain())                                 # levers, side effects, why
    reply = guard.generate([{"role": "user", "content": "What matters in life?"}])

Role levers are composed into the system prompt; SAE levers run through dispatcher hooks installed
once for the guard's lifetime (removed by ``close()``), while each request's interventions live in a
context variable, so concurrent requests with different profiles never see each other's levers.
With ``server.batching`` (the default), ``generate`` and ``stream`` calls from any number of threads
share one continuous-batching decode loop (``runtime/batcher``), each row with its own levers.
The configuration is an immutable snapshot: ``reload()`` validates and plans first, then swaps it;
requests keep the snapshot they started with.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalguard.adapters.hf.hooks import install_steering_hooks
from causalguard.adapters.hf.interventions import SaeIntervention
from causalguard.adapters.hf.sae import LoadedSae, load_sae
from causalguard.adapters.hf.value_adapters import ValueAdapter, install_adapter_hooks, load_value_adapters
from causalguard.adapters.hf.vectors import VectorSet, load_vectors
from causalguard.bundle.format import Bundle, load_bundle, resolve_bundle_dir
from causalguard.config.holder import ConfigHolder
from causalguard.config.loading import SourcedConfig, read_guard_config, upstream_api_key
from causalguard.config.schema import GuardConfig
from causalguard.errors import ConfigError
from causalguard.judging.judge import ValueJudge
from causalguard.judging.reply_quality import QualityCalibration
from causalguard.metrics import GuardMetrics, RequestOutcome
from causalguard.models.loaded import LoadedModel
from causalguard.planning.explain import explain_plan
from causalguard.planning.planner import Plan
from causalguard.runtime.audit import CanaryAuditor
from causalguard.runtime.batcher import BatchJob, ContinuousBatcher, DecodeSettings
from causalguard.runtime.conversation import Message, compose_messages
from causalguard.runtime.generation import Generated, cancel_criteria, chat_prompt_ids, cut_at_stop, generate_rows
from causalguard.runtime.monitor import JudgedReply, LiveMonitor, ServedReply
from causalguard.runtime.plan_conditions import ProfileCondition, plan_row
from causalguard.runtime.reply_audit import ReplyAuditor
from causalguard.runtime.state import GuardState, build_guard_state, bundle_catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardedResponse:
    """One guarded reply.

    Attributes:
        text: The reply, ending before the first stop string if one matched.
        completion_tokens: Tokens generated for the reply (a stop string's tokens included).
        prompt_tokens: Tokens of the prompt as the model saw it (chat template and role lever text included).
        profile: The profile whose plan steered the reply.
        levers: The plan's lever ids, in plan order (empty for an unguarded profile).
        finish_reason: ``"stop"`` (end of turn or a stop string), ``"length"`` (``max_new_tokens`` reached)
            or ``"cancelled"`` (stopped early).
        scores: The reply's value scores in the judge's units, only with ``monitor.expose_scores``.
    """

    text: str
    completion_tokens: int
    prompt_tokens: int
    profile: str
    levers: tuple[str, ...]
    finish_reason: str
    scores: dict[str, float] | None = None


class Cancellation(threading.Event):
    """A cancel event that says why: ``cancel("timeout")`` is counted as a timeout, not a cancellation."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: RequestOutcome = "cancelled"

    def cancel(self, reason: RequestOutcome = "cancelled") -> None:
        self.reason = reason
        self.set()


def _stopped_outcome(cancel: threading.Event | None) -> RequestOutcome:
    if cancel is None or not cancel.is_set():
        return "ok"
    return cancel.reason if isinstance(cancel, Cancellation) else "cancelled"


# How long past its own deadline a caller waits for a job the decode loop has not ended (a loop stuck in a
# forward pass cannot remove the row): then the caller gives up with a TimeoutError.
DEADLINE_GRACE_SECONDS = 5.0


def _bounded_result(job: BatchJob, timeout_seconds: float | None) -> Generated:
    """``job.result()``, waiting at most ``timeout_seconds`` plus a grace when a timeout is given."""
    return job.result(None if timeout_seconds is None else timeout_seconds + DEADLINE_GRACE_SECONDS)


def _close_parts(auditor: CanaryAuditor | ReplyAuditor, monitor: LiveMonitor | None, stack: ExitStack) -> None:
    """Stop a guard's background threads, then its decode loop and hooks (the stack unwinds in reverse)."""
    auditor.stop()
    if monitor is not None:
        monitor.stop()
    stack.close()


def method_label(plan: Plan) -> str:
    """The metrics' ``method`` label: the strongest kind of lever the plan uses (sae, adapter, pair, vector,
    guided, role, none)."""
    kinds = {lever.kind for lever in plan.levers}
    return next((kind for kind in ("sae", "adapter", "pair", "vector", "guided", "role") if kind in kinds), "none")


def _check_bundle_model(sourced: SourcedConfig, bundle: Bundle | str | Path | None) -> None:
    """Before a model is loaded (a minute for some): an embedded model with another embedded model's bundle
    is refused at once, naming the bundle (the fingerprint check after loading covers every other case)."""
    import json

    from causalguard.models.registry import EMBEDDED_MODELS

    config = sourced.config
    if (
        isinstance(bundle, Bundle)
        or config.model not in EMBEDDED_MODELS
        or (bundle is None and config.bundle == "builtin")
    ):
        return
    base = sourced.path.parent if sourced.path is not None else None
    folder = resolve_bundle_dir(bundle if bundle is not None else config.bundle, config.model, base)
    try:
        built_for = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))["model"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # unreadable: load_bundle names the problem after the model is loaded
    if built_for in EMBEDDED_MODELS and built_for != config.model:
        raise ConfigError.single(
            sourced.where,
            f"the bundle {folder} was built for {built_for}, the config serves {config.model}",
            line=sourced.line("bundle"),
            field="bundle",
            hint=f"use bundle: builtin, or a bundle built for {config.model}",
        )


class ValueGuard:
    """Guard a local Hugging Face chat model (or, with ``upstream:``, proxy an OpenAI-compatible server).

    The guard plans levers for every profile of the config from the bundle's measurements, installs the
    hooks the plans need once, and steers each request by its profile's plan. It owns background threads
    (audits, the live monitor, the decode loop when batching is on): use it as a context manager, or call
    ``close()``.

    Args:
        model: A loaded ``transformers`` causal LM (put in eval mode here).
        tokenizer: Its tokenizer; it must have a chat template unless the config proxies an upstream.
        config: A ``guard.yaml`` path, or a config already read (``SourcedConfig`` or ``GuardConfig``).
        bundle: The bundle to plan from (a ``Bundle``, or a folder); default: the config's ``bundle``.
        metrics: Where Prometheus metrics go; default: a private registry.
        start_audits: Start the configured audits in the background.
        name: The model's name in metrics and replies; default: the config's ``model``.
        force_bundle: Accept a bundle measured on other weights (its fingerprint differs).

    Raises:
        ConfigError: The config is invalid, a profile cannot be planned, or the bundle does not fit the
            model; the message names the file, line and field.

    Example:
        >>> with ValueGuard.from_config("deploy/guard.yaml") as guard:  # doctest: +SKIP
        ...     reply = guard.generate([{"role": "user", "content": "Any weekend ideas?"}])
        ...     print(reply.text, reply.levers)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: SourcedConfig | GuardConfig | str | Path,
        *,
        bundle: Bundle | str | Path | None = None,
        metrics: GuardMetrics | None = None,
        start_audits: bool = True,
        name: str | None = None,
        force_bundle: bool = False,
    ) -> None:
        from causalguard.models.fingerprint import weights_fingerprint

        self.source = read_guard_config(config)  # the file is parsed here, once
        first = self.source.config
        model.eval()
        self.lm = LoadedModel(model, tokenizer, name or first.model, weights_fingerprint(model), first.model)
        if first.upstream is None and not self.lm.has_chat_template:
            raise ConfigError.single(
                self.source.where,
                f"{self.lm.name} has no chat template (a base model): the guard composes "
                "conversations with the model's chat template",
                line=self.source.line("model"),
                field="model",
                hint="serve a chat or instruct model (e.g. smollm2-135m-instruct), set tokenizer.chat_template "
                "before wrapping this one, or serve it behind an OpenAI-compatible server and set 'upstream'",
            )
        self.bundle = bundle if isinstance(bundle, Bundle) else self._load_bundle(first, bundle, force_bundle)
        self.catalog = bundle_catalog(self.bundle)
        self.sae: LoadedSae | None = None
        # proxy mode (``upstream:``): replies come from the upstream, so SAE levers cannot run; fixed at start
        self.proxy = first.upstream is not None
        if self.bundle.sae_dir is not None and not self.proxy:
            self.sae = load_sae(self.bundle.sae_dir, self.lm)
        self.vectors: VectorSet | None = None
        if self.bundle.vectors_dir is not None and not self.proxy:
            self.vectors = load_vectors(
                self.bundle.vectors_dir,
                hidden_size=self.lm.hidden_size,
                num_layers=self.lm.num_layers,
                fingerprint=self.lm.fingerprint,
            )
        self.adapters: dict[str, ValueAdapter] = {}
        if self.bundle.adapters_dir is not None and not self.proxy:
            self.adapters = load_value_adapters(
                self.bundle.adapters_dir, self.lm.model, fingerprint=self.lm.fingerprint
            )
        self.metrics = metrics if metrics is not None else GuardMetrics()
        self._closed = False
        self._stack = ExitStack()
        layers = ({self.sae.layer} if self.sae is not None else set()) | (
            self.vectors.layers() if self.vectors is not None else set()
        )
        if layers:
            self.hooks = self._stack.enter_context(install_steering_hooks(self.lm.model, sorted(layers)))
        if self.adapters:
            self.adapter_hooks = self._stack.enter_context(
                install_adapter_hooks(self.lm.model, list(self.adapters.values()))
            )
        # one decode loop for concurrent requests; closed before the hooks are removed (the stack unwinds in reverse)
        self.batcher: ContinuousBatcher | None = None
        if first.server.batching and not self.proxy:
            self.batcher = self._stack.enter_context(
                ContinuousBatcher(
                    self.lm, max_rows=first.server.max_concurrency, prefix_cache_tokens=first.server.prefix_cache_tokens
                )
            )
        try:
            self._holder: ConfigHolder[GuardState] = ConfigHolder(lambda: self._build_state(self.source))
        except Exception:
            self._stack.close()
            raise
        self.metrics.bundle.info(
            {
                "model": self.bundle.model_name,
                "fingerprint": self.bundle.fingerprint,
                "schema": self.bundle.schema,
                "catalog_levers": str(len(self.catalog.levers)),
            }
        )
        self._publish(self.state)
        self.busy: Callable[[], bool] = lambda: False  # the server sets this: audits skip rounds while it is busy
        self.upstream_ready: Callable[[], bool] = lambda: True  # the server sets this in proxy mode
        self._judge: ValueJudge | None = None  # loaded once, shared by the reply audits and the live monitor
        try:
            self.auditor: CanaryAuditor | ReplyAuditor = self._make_auditor(first)
            self.monitor: LiveMonitor | None = self._make_monitor(first)
        except Exception:
            self._stack.close()
            raise
        # closes the background threads and hooks on close(), or at interpreter exit for a guard never
        # closed (a thread left inside a forward pass at exit aborts the process)
        self._finalizer = weakref.finalize(self, _close_parts, self.auditor, self.monitor, self._stack)
        if start_audits and first.audit.enabled:
            self.auditor.start()
        if self.monitor is not None:
            self.monitor.start()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: SourcedConfig | str | Path, **kwargs: Any) -> ValueGuard:
        """Load the config's model and guard it.

        Args:
            config: A ``guard.yaml`` path or a config already read.
            **kwargs: Passed to ``ValueGuard`` (``bundle``, ``metrics``, ``start_audits``, ...).

        Returns:
            The running guard (close it, or use it as a context manager).

        Raises:
            ConfigError: As for ``ValueGuard``; also when ``model`` (a registry name, folder, ``.gguf`` file
                or HF id) cannot be loaded, or an embedded model is given another model's bundle.
        """
        from causalguard.models import load_model

        sourced = read_guard_config(config)
        _check_bundle_model(sourced, kwargs.get("bundle"))
        with sourced.blame("model"):
            lm = load_model(sourced.config.model)
        return cls(lm.model, lm.tokenizer, sourced, name=lm.name, **kwargs)

    @property
    def config_path(self) -> Path | None:
        """The file the current configuration was read from (None for an in-memory config)."""
        return self.source.path

    def _sourced(self, config: GuardConfig) -> SourcedConfig:
        """``config`` with the file it came from, when it is the one this guard read (for line numbers)."""
        return self.source if self.source.config is config else SourcedConfig(config)

    def _load_bundle(self, config: GuardConfig, bundle: str | Path | None, force: bool) -> Bundle:
        base = self.config_path.parent if self.config_path is not None else None
        if bundle is not None:
            return load_bundle(
                resolve_bundle_dir(bundle, config.model, base), expected_fingerprint=self.lm.fingerprint, force=force
            )
        with self._sourced(config).blame("bundle"):
            folder = resolve_bundle_dir(config.bundle, config.model, base)
            return load_bundle(folder, expected_fingerprint=self.lm.fingerprint, force=force)

    def _reply_judge(self) -> tuple[ValueJudge, QualityCalibration] | None:
        """The bundle's value judge and reply-quality calibration, or None when it lacks either."""
        from causalguard.artifacts import JUDGE_FILE
        from causalguard.judging.judge import load_probe_judge

        folder = self.bundle.path
        calibration = self.bundle.behaviour.calibration if self.bundle.behaviour is not None else None
        if folder is None or calibration is None or not (folder / JUDGE_FILE).exists():
            return None
        if self._judge is None:
            self._judge = load_probe_judge(folder, self.lm)
        return self._judge, calibration

    def _make_monitor(self, config: GuardConfig) -> LiveMonitor | None:
        """The live monitor where the bundle has a value judge (``monitor.enabled`` is read per reply, so a
        reload can turn it on or off); None, said once in the log, without a judge."""
        judged = self._reply_judge()
        if judged is None:
            if config.monitor.enabled:
                log.warning(
                    "live monitor off: the bundle has no value judge and reply calibration (judge.json, "
                    "behaviour.json); run 'causalguard behaviour report --bundle FOLDER'"
                )
            return None
        return LiveMonitor(lambda: self.state, judged[0], judged[1], self.metrics, lm=self.lm)

    def observe_reply(
        self, profile: str, messages: Sequence[Message], text: str, *, state: GuardState | None = None
    ) -> dict[str, float] | None:
        """Hand a finished reply (generated here or, in proxy mode, upstream) to the live monitor. Returns its
        value scores when ``monitor.expose_scores`` is on (judged on this thread), else None. Never raises."""
        try:
            state = state or self.state
            if self.monitor is None or not state.config.monitor.enabled:
                return None
            plan = state.plan(profile)
            served = compose_messages(messages, state.config.system_prompt, plan.role_instructions())
            system = next((m["content"] for m in served if m["role"] == "system"), None)
            user = next((m["content"] for m in reversed(served) if m["role"] == "user"), "")
            reply = ServedReply(profile, plan.key, user, text, system)
            if state.config.monitor.expose_scores:
                judged: JudgedReply | None = self.monitor.judge_now(reply)
                return None if judged is None else judged.scores
            self.monitor.observe(reply)
        except Exception:  # the monitor never breaks serving
            log.exception("live monitor: could not take a reply")
        return None

    def observe_cancelled(self, profile: str) -> None:
        """A stream stopped before its reply was complete: counted by the monitor, not judged."""
        if self.monitor is not None and self.state.config.monitor.enabled:
            self.monitor.cancelled(profile)

    def _make_auditor(self, config: GuardConfig) -> CanaryAuditor | ReplyAuditor:
        """Reply audits where the bundle has a value judge and reply calibration (or ``audit.kind: replies``
        demands them), else survey audits. The kind is fixed at start-up; a reload does not switch it."""
        kind = config.audit.kind
        judged = self._reply_judge()
        if kind == "replies" and judged is None:
            raise ConfigError.single(
                self.source.where,
                "reply audits need a bundle with a value judge and reply calibration (judge.json, behaviour.json)",
                field="audit.kind",
                hint="run 'causalguard behaviour report --bundle FOLDER' or set audit.kind: survey",
            )
        if kind == "survey" or judged is None:
            return CanaryAuditor(lambda: self.state, self.lm, self.bundle, self.metrics, self.audit_condition)
        from causalguard.judging.prompt_sets import load_prompts

        judge, calibration = judged
        if config.audit.prompts is None:
            prompts = load_prompts(dimensions=self.catalog.dimensions).split("test")
        else:
            path = Path(config.audit.prompts)
            if not path.is_absolute() and self.config_path is not None:
                path = self.config_path.parent / path
            prompts = load_prompts(path, dimensions=self.catalog.dimensions)
        complete = None
        if config.upstream is not None:
            from causalguard.runtime.upstream_replies import upstream_completer

            complete = upstream_completer(config.upstream, api_key=upstream_api_key(self._sourced(config)))
        return ReplyAuditor(
            lambda: self.state,
            self.lm,
            judge,
            calibration,
            prompts,
            self.metrics,
            busy=lambda: self.busy(),
            complete=complete,
            ready=lambda: self.upstream_ready(),
        )

    def _build_state(self, sourced: SourcedConfig) -> GuardState:
        return build_guard_state(
            sourced, self.bundle, sae=self.sae, local_model=not self.proxy, vectors=self.vectors, adapters=self.adapters
        )

    def _publish(self, state: GuardState) -> None:
        for plan in state.plans.values():
            self.metrics.publish_plan(plan)

    # ---- configuration --------------------------------------------------------------------------
    @property
    def state(self) -> GuardState:
        return self._holder.current().state

    @property
    def config_version(self) -> int:
        """1 for the first configuration, +1 per successful reload."""
        return self._holder.current().version

    @property
    def config(self) -> GuardConfig:
        return self.state.config

    def plan(self, profile: str = "default") -> Plan:
        return self.state.plan(profile)

    def explain(self, profile: str = "default") -> str:
        """Why a profile's plan is what it is, as text: each lever with its measured effects and forecast
        side effects, the targets refused and why.

        Args:
            profile: A profile of the current config.

        Returns:
            The explanation the ``causalguard plan`` command prints.

        Raises:
            UnknownProfileError: No such profile.
        """
        return explain_plan(self.plan(profile), self.catalog)

    def reload(self, config: SourcedConfig | GuardConfig | str | Path | None = None) -> GuardState:
        """Validate and plan a new configuration, then swap it in; on any error the old one stays.

        Requests in flight finish under the plan they started with.

        Args:
            config: The new config (a path or a config read); default: re-read the current file.

        Returns:
            The new state (config and plans).

        Raises:
            ConfigError: The new config is invalid or infeasible, or changes ``model`` or ``bundle``
                (restart for those); the message points into the file actually read.
            ValueError: No config given and the guard was built from an in-memory config.
        """
        try:
            if config is None:
                if self.config_path is None:
                    raise ValueError("this guard was built from an in-memory config: pass the new one")
                config = self.config_path
            sourced = read_guard_config(config)
            new = sourced.config
            if new.model != self.config.model or new.bundle != self.config.bundle:
                raise ConfigError.single(
                    sourced.where,
                    "model and bundle cannot change on reload",
                    field="model",
                    hint="restart the guard to change model or bundle",
                )
            state = self._holder.reload(lambda: self._build_state(sourced)).state
            self.source = sourced
        except Exception:
            self.metrics.config_reloads.labels(outcome="error").inc()
            raise
        self.metrics.config_reloads.labels(outcome="ok").inc()
        self._publish(state)
        return state

    # ---- generation -----------------------------------------------------------------------------
    def prompt_ids(self, messages: Sequence[Message], plan: Plan, config: GuardConfig) -> list[int]:
        return chat_prompt_ids(self.lm, messages, config.system_prompt, plan.role_instructions())

    def audit_condition(self, profile: str, state: GuardState | None = None) -> ProfileCondition:
        """The profile's levers as a steering condition (used by audits)."""
        state = state or self.state
        plan = state.plan(profile)
        note = " ".join(plan.role_instructions()) or None
        return ProfileCondition(f"guard:{profile}", note, state.interventions[profile])

    def generate(
        self,
        messages: Sequence[Message],
        *,
        profile: str = "default",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        extra_interventions: Sequence[SaeIntervention] = (),
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        timeout_seconds: float | None = None,
        observe: bool = True,
    ) -> GuardedResponse:
        """One guarded reply to a conversation.

        With batching on, the request joins the shared decode loop; otherwise it is a batch of one.

        Args:
            messages: The conversation, OpenAI-style ``{"role", "content"}`` dicts; a system message is
                kept, and a role lever's text is added to it.
            profile: Which profile's plan steers the reply.
            max_new_tokens: At most this many tokens are generated.
            temperature: 0 for greedy decoding; above 0, sampling.
            seed: With ``temperature > 0``, the sampler's seed (reproducible; no global RNG is touched).
            cancel: Setting this event stops generation at the next token.
            extra_interventions: SAE edits on top of the profile's (the server passes them only when the
                operator allows it).
            top_p: Nucleus sampling mass, with ``temperature > 0``.
            stop: The reply ends before the first of these strings.
            timeout_seconds: With batching on: past it the row is removed from the batch, also when the
                decode loop itself has stopped making progress.
            observe: ``False`` keeps the reply from the live monitor (health checks, warm-ups).

        Returns:
            The reply, its token counts, the profile and its levers.

        Raises:
            UnknownProfileError: No such profile.
            TimeoutError: ``timeout_seconds`` passed (a ``DeadlineExceeded``).
            SamplingError: The model's next-token scores could not be sampled (not finite).
        """
        if self.batcher is None:
            return self.generate_batch(
                [messages],
                profiles=[profile],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                cancel=cancel,
                extra_interventions=[tuple(extra_interventions)],
                top_p=top_p,
                stop=stop,
                observe=observe,
            )[0]
        state = self.state
        plan = state.plan(profile)
        row = plan_row(
            self.lm,
            messages,
            state.config.system_prompt,
            plan,
            state.interventions[profile] + tuple(extra_interventions),
            seed,
        )
        prompt = row.prompt
        started = time.perf_counter()
        outcome: RequestOutcome = "error"
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        try:
            job = self.batcher.submit(
                row, DecodeSettings(max_new_tokens, temperature, top_p, tuple(stop)), cancel=cancel, deadline=deadline
            )
            out = _bounded_result(job, timeout_seconds)
            outcome = _stopped_outcome(cancel)
        except TimeoutError:
            outcome = "timeout"
            raise
        finally:
            self._count(profile, plan, outcome, time.perf_counter() - started)
        response = self._response(profile, plan, len(prompt), out, stop)
        return self._monitored(response, messages, state, outcome) if observe else response

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        profiles: Sequence[str] | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        extra_interventions: Sequence[tuple[SaeIntervention, ...]] | None = None,
        min_new_tokens: int = 0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        observe: bool = True,
    ) -> list[GuardedResponse]:
        """Guarded replies to several conversations in one left-padded batch, each row under its own
        profile's plan.

        Args:
            conversations: One conversation per row (as in ``generate``).
            profiles: One profile per conversation; default: ``"default"`` for every row.
            max_new_tokens: As in ``generate``.
            temperature: As in ``generate``.
            seed: With ``temperature > 0``, row ``i`` samples from its own generator seeded ``seed + i``, so a
                seeded request is reproducible under concurrency.
            cancel: As in ``generate``, for the whole batch.
            extra_interventions: Per row, SAE edits on top of the row's plan.
            min_new_tokens: The end-of-turn token is suppressed until this many tokens are generated.
            top_p: As in ``generate``.
            stop: As in ``generate``, for every row.
            observe: As in ``generate``.

        Returns:
            One reply per conversation, in order.

        Raises:
            ValueError: ``profiles`` does not have one entry per conversation.
            UnknownProfileError: No such profile.
        """
        state = self.state
        profiles = list(profiles) if profiles is not None else ["default"] * len(conversations)
        if len(profiles) != len(conversations):
            raise ValueError("give one profile per conversation")
        plans = [state.plan(p) for p in profiles]
        started = time.perf_counter()
        extras = list(extra_interventions) if extra_interventions is not None else [()] * len(conversations)
        rows = [
            plan_row(
                self.lm,
                m,
                state.config.system_prompt,
                plan,
                state.interventions[p] + extra,
                None if seed is None else seed + i,
            )
            for i, (m, p, plan, extra) in enumerate(zip(conversations, profiles, plans, extras, strict=True))
        ]
        prompts = [row.prompt for row in rows]
        criteria = cancel_criteria(cancel) if cancel is not None else None
        outcome: RequestOutcome = "error"
        try:
            outs = generate_rows(
                self.lm,
                rows,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                min_new_tokens=min_new_tokens,
                stopping_criteria=criteria,
                cancelled=cancel,
                top_p=top_p,
                stop=stop,
            )
            outcome = _stopped_outcome(cancel)
        finally:
            for profile, plan in zip(profiles, plans, strict=True):
                self._count(profile, plan, outcome, time.perf_counter() - started)
        responses = [
            self._response(profile, plan, len(prompt), out, stop)
            for profile, plan, prompt, out in zip(profiles, plans, prompts, outs, strict=True)
        ]
        if not observe:
            return responses
        return [self._monitored(r, m, state, outcome) for r, m in zip(responses, conversations, strict=True)]

    def _monitored(
        self, response: GuardedResponse, messages: Sequence[Message], state: GuardState, outcome: RequestOutcome
    ) -> GuardedResponse:
        """``response`` handed to the live monitor (a stopped one only counted), with its scores when exposed."""
        if outcome != "ok":
            self.observe_cancelled(response.profile)
            return response
        scores = self.observe_reply(response.profile, messages, response.text, state=state)
        return response if scores is None else dataclasses.replace(response, scores=scores)

    def _response(
        self, profile: str, plan: Plan, prompt_tokens: int, out: Generated, stop: Sequence[str]
    ) -> GuardedResponse:
        """A finished generation as a reply (text cut at the first stop string), its tokens counted."""
        self.metrics.generated_tokens.labels(profile=profile, method=method_label(plan)).inc(len(out.tokens))
        text, stopped = cut_at_stop(self.lm.tokenizer.decode(out.tokens, skip_special_tokens=True), stop)
        return GuardedResponse(
            text,
            len(out.tokens),
            prompt_tokens,
            profile,
            tuple(lever.id for lever in plan.levers),
            "stop" if stopped else out.finish_reason,
        )

    def stream(
        self,
        messages: Sequence[Message],
        *,
        profile: str = "default",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        extra_interventions: Sequence[SaeIntervention] = (),
        report: dict[str, Any] | None = None,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        timeout_seconds: float | None = None,
    ) -> Iterator[str]:
        """A guarded reply as text pieces, yielded as they are generated.

        Closing the iterator early (or setting ``cancel``) stops generation at the next token. With
        ``stop``, text that could begin a stop string is held back until it cannot, and the stream ends
        before the stop string.

        Args:
            messages: As in ``generate``.
            profile: As in ``generate``.
            max_new_tokens: As in ``generate``.
            temperature: As in ``generate``.
            seed: As in ``generate``.
            cancel: As in ``generate``.
            extra_interventions: As in ``generate``.
            report: A dict that receives ``completion_tokens`` and ``finish_reason`` (``stop``, ``length`` or
                ``cancelled``) when the stream ends, and ``scores`` with ``monitor.expose_scores``.
            top_p: As in ``generate``.
            stop: As in ``generate``.
            timeout_seconds: As in ``generate``.

        Yields:
            The reply's text, piece by piece.

        Raises:
            UnknownProfileError: No such profile.
            TimeoutError: ``timeout_seconds`` passed.
        """
        import torch
        from transformers import TextIteratorStreamer

        state = self.state
        plan = state.plan(profile)
        row = plan_row(
            self.lm,
            messages,
            state.config.system_prompt,
            plan,
            state.interventions[profile] + tuple(extra_interventions),
            seed,
        )
        prompt = row.prompt
        stops, halt = tuple(stop), cancel or threading.Event()
        streamer = TextIteratorStreamer(self.lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        method = method_label(plan)

        counted: dict[str, int] = {"tokens": 0}
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if self.batcher is not None:  # the shared decode loop feeds the streamer token by token
                    streamer.put(torch.tensor([prompt]))  # the streamer skips the first thing it is given
                    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
                    job = self.batcher.submit(
                        row,
                        DecodeSettings(max_new_tokens, temperature, top_p, stops),
                        cancel=halt,
                        on_token=lambda t: streamer.put(torch.tensor([t])),
                        on_end=streamer.end,
                        deadline=deadline,
                    )
                    out, eos = _bounded_result(job, timeout_seconds), job.hit_eos
                else:
                    (out,) = generate_rows(
                        self.lm,
                        [row],
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        streamer=streamer,
                        top_p=top_p,
                        stop=stops,
                        stopping_criteria=cancel_criteria(halt),
                    )
                    eos = out.finish_reason == "stop"
                counted["tokens"] = len(out.tokens) + int(eos)
                counted["eos"] = int(eos)
            except BaseException as exc:  # surfaced to the consumer below
                failure.append(exc)
                streamer.end()

        started = time.perf_counter()
        worker = threading.Thread(target=run, name="causalguard-stream", daemon=True)
        worker.start()
        outcome: RequestOutcome = "error"
        first, held, hit_stop, sent = True, "", False, []
        keep = max((len(s) for s in stops), default=1) - 1  # a stop string may straddle pieces
        try:
            for piece in streamer:
                if not piece or hit_stop:
                    continue
                held, hit_stop = cut_at_stop(held + piece, stops)
                ready = held if hit_stop else held[: len(held) - keep] if keep else held
                held = held[len(ready) :]
                if ready:
                    if first:
                        self.metrics.ttft_seconds.labels(profile=profile, method=method).observe(
                            time.perf_counter() - started
                        )
                        first = False
                    sent.append(ready)
                    yield ready
                if hit_stop:
                    halt.set()
            if held and not hit_stop:
                sent.append(held)
                yield held
            if failure:
                raise failure[0]
            outcome = "ok" if hit_stop else _stopped_outcome(halt)
        except GeneratorExit:  # closed by the consumer: a timeout when it said so, else a cancellation
            outcome = _stopped_outcome(halt) if halt.is_set() else "cancelled"
            raise
        finally:
            halt.set()
            worker.join()
            self.metrics.generated_tokens.labels(profile=profile, method=method).inc(counted["tokens"])
            if report is not None:
                report["completion_tokens"] = counted["tokens"]
                report["finish_reason"] = (
                    "stop"
                    if counted.get("eos") or hit_stop
                    else "cancelled"
                    if outcome in ("cancelled", "timeout")
                    else "length"
                )
            self._count(profile, plan, outcome, time.perf_counter() - started)
            if outcome == "ok":
                scores = self.observe_reply(profile, messages, "".join(sent), state=state)
                if report is not None and scores is not None:
                    report["scores"] = scores
            elif outcome in ("cancelled", "timeout"):
                self.observe_cancelled(profile)

    @property
    def installed_hooks(self) -> int:
        """Dispatcher hooks this guard has installed (0 once closed, or without SAE, vectors and adapters)."""
        handles = (getattr(self, "hooks", None), getattr(self, "adapter_hooks", None))
        return sum(len(handle.handles) for handle in handles if handle is not None)

    def record_request(self, profile: str, outcome: RequestOutcome, seconds: float) -> None:
        """Count a request served elsewhere (proxy mode) under this guard's metrics."""
        self._count(profile, self.state.plan(profile), outcome, seconds)

    def record_tokens(self, profile: str, tokens: int) -> None:
        """Count tokens generated elsewhere (proxy mode) under this guard's metrics."""
        if tokens > 0:
            self.metrics.generated_tokens.labels(profile=profile, method=method_label(self.state.plan(profile))).inc(
                tokens
            )

    def record_first_token(self, profile: str, seconds: float) -> None:
        """Observe the time to the first token of a stream generated elsewhere (proxy mode)."""
        self.metrics.ttft_seconds.labels(profile=profile, method=method_label(self.state.plan(profile))).observe(
            seconds
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the local model's tokenizer (proxy mode without upstream usage)."""
        return len(self.lm.tokenizer(text, add_special_tokens=False).input_ids) if text else 0

    def _count(self, profile: str, plan: Plan, outcome: RequestOutcome, seconds: float) -> None:
        self.metrics.count_request(profile, method_label(plan), outcome, seconds, [lever.kind for lever in plan.levers])

    # ---- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop audits and the live monitor, and remove the hooks (idempotent; also run at interpreter exit
        for a guard that was never closed)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> ValueGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
