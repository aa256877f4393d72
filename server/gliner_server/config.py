"""The service configuration file (YAML): models, /run endpoints, API clients, storage.

    default_model: fastino/gliner2-base-v1
    models:
      - id: fastino/gliner2-base-v1           # hub id (source defaults to the id)
      - id: fastino/gliner2.5-base-v1
      - id: job_abc123                        # fine-tuned: a full checkpoint directory
        source: /models/job_abc123
      - id: job_lora42                        # fine-tuned: a LoRA adapter over a base model
        source: fastino/gliner2-base-v1
        adapter: /adapters/job_lora42
    max_loaded_models: 2                      # least recently used is unloaded beyond this
    max_loaded_bytes: 4000000000              # ... or beyond this much memory
    model_load_backoff_s: 30                  # a model that failed to load is not tried again before this
    model_load_wait_s: 60                     # longest a request waits for its model to load (then 503)
    max_dataset_records: 10000                # records per training dataset (more: 413)
    max_dataset_bytes: 33554432               # a dataset's records as JSON (more: 413)
    max_datasets_per_client: 100              # training datasets per API client (more: 429)
    max_active_training_jobs: 2               # requested + running training jobs per API client (more: 429)
    training_dir: /var/lib/gliner2/training   # where training jobs write their models (shared by machines)
    training_stale_seconds: 30                # a running job without a worker heartbeat this long is failed
    endpoints:
      - id: fastino-pii-demo
        model: fastino/gliner2-base-v1
        description: Names, cars and times in booking messages
        parameters: {entity_types: [full_name, car, time], threshold: 0.3}
    api_keys:
      - name: acme                            # the client id recorded in the history
        key_env: ACME_API_KEY                 # or key: ..., or key_file: ...
      - name: hospital
        key_file: /run/secrets/hospital_key
        privacy_mode: true                    # record metadata only for this client
    database_url: sqlite:////var/lib/gliner2/history.db   # or postgresql+psycopg://...
    limits:                                   # every key optional; flags override (README, "Limits")
      max_text_chars: 100000
      long_text: chunk                        # or reject (413) texts over window_words

Every key may be omitted; ``gliner2-serve`` flags add to it (``--model`` sets the
default model, ``--api-key`` adds anonymous-named clients).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_MODEL = "fastino/gliner2-base-v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    id: str = Field(min_length=1)
    source: str | None = None          # hub id or directory; defaults to id
    adapter: str | None = None         # LoRA adapter directory over `source`
    description: str = ""
    kind: Literal["base", "fine_tuned"] | None = None

    @property
    def resolved_kind(self) -> str:
        if self.kind:
            return self.kind
        return "fine_tuned" if self.adapter or self.id.startswith("job_") else "base"


class EndpointConfig(_Strict):
    id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class ApiKeyConfig(_Strict):
    name: str = Field(min_length=1, max_length=200)   # the client id the history records
    key: str | None = None
    key_env: str | None = None
    key_file: str | None = None
    privacy_mode: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.key, self.key_env, self.key_file)) != 1:
            raise ValueError(f"api key {self.name!r}: give exactly one of key, key_env, key_file")
        return self

    def resolve(self) -> str:
        if self.key is not None:
            return self.key
        if self.key_env is not None:
            value = os.environ.get(self.key_env)
            if not value:
                raise ValueError(f"api key {self.name!r}: environment variable {self.key_env} is not set")
            return value.strip()
        return Path(self.key_file).read_text().strip()


class LimitsConfig(_Strict):
    """The ``limits:`` section (see :class:`gliner_server.core.limits.Limits` for the meaning and defaults)."""

    max_text_chars: int | None = Field(default=None, ge=1)
    max_texts: int | None = Field(default=None, ge=1)
    max_schema_items: int | None = Field(default=None, ge=1)
    max_schema_chars: int | None = Field(default=None, ge=1)
    long_text: Literal["chunk", "reject"] | None = None
    window_words: int | None = Field(default=None, ge=1)
    window_overlap_words: int | None = Field(default=None, ge=0)
    max_pass_tokens: int | None = Field(default=None, ge=1)
    max_request_bytes: int | None = Field(default=None, ge=1024)   # REST bodies (Envoy) and gRPC messages
    max_queued_texts: int | None = Field(default=None, ge=1)       # per model, beyond which requests get 429

    def limits(self, **overrides):
        """The core's :class:`Limits`: these values, then ``overrides`` (flags) where not None."""
        from .core.limits import Limits

        values = {**self.model_dump(exclude_none=True), **{k: v for k, v in overrides.items() if v is not None}}
        values.pop("max_request_bytes", None)
        values.pop("max_queued_texts", None)
        if "window_words" in values and "window_overlap_words" not in values:
            # the library's ratio (64 of 384 words) for a window set without its overlap
            values["window_overlap_words"] = min(Limits.window_overlap_words, values["window_words"] // 6)
        return Limits(**values)


class ServiceConfig(_Strict):
    default_model: str | None = None
    models: list[ModelConfig] = Field(default_factory=list)
    max_loaded_models: int | None = Field(default=2, ge=1)
    max_loaded_bytes: int | None = Field(default=None, ge=1)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    database_url: str | None = None
    max_batch_inputs: int = Field(default=64, ge=1)      # inputs per /run request
    max_dataset_records: int = Field(default=10_000, ge=1)    # records per training dataset
    max_dataset_bytes: int = Field(default=32 << 20, ge=1)    # a dataset's records as JSON
    max_datasets_per_client: int = Field(default=100, ge=1)   # training datasets per API client
    max_active_training_jobs: int = Field(default=2, ge=1)    # requested + running jobs per API client
    training_dir: str | None = None                        # default DATA_DIR/training
    training_stale_seconds: float = Field(default=30.0, ge=1)  # no heartbeat this long: the job's worker died
    model_load_backoff_s: float = Field(default=30.0, gt=0)   # a failed load is answered from memory this long
    model_load_wait_s: float = Field(default=60.0, gt=0)      # longest a request waits for its model to load
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @model_validator(mode="after")
    def _consistent(self):
        ids = [m.id for m in self.models]
        if len(set(ids)) != len(ids):
            raise ValueError("model ids must be unique")
        endpoint_ids = [e.id for e in self.endpoints]
        if len(set(endpoint_ids)) != len(endpoint_ids) or set(endpoint_ids) & set(ids):
            raise ValueError("endpoint ids must be unique and differ from model ids")
        names = [k.name for k in self.api_keys]
        if len(set(names)) != len(names):
            raise ValueError("api key names must be unique")
        return self

    def with_default_model(self, model: str | None) -> ServiceConfig:
        """The default model: ``model``, else the file's default_model, else its first model,
        else DEFAULT_MODEL; registered as a model if it is not listed."""
        config = self.model_copy(deep=True)
        config.default_model = (model or config.default_model
                                or (config.models[0].id if config.models else DEFAULT_MODEL))
        if config.default_model not in {m.id for m in config.models}:
            config.models.insert(0, ModelConfig(id=config.default_model))
        for endpoint in config.endpoints:
            if endpoint.model not in {m.id for m in config.models}:
                raise ValueError(f"endpoint {endpoint.id!r} runs unknown model {endpoint.model!r}")
        return config


def load_config(path: Path | None) -> ServiceConfig:
    if path is None:
        return ServiceConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return ServiceConfig(**data)
    except (OSError, yaml.YAMLError, ValidationError, TypeError) as error:
        raise ValueError(f"invalid configuration file {path}: {error}") from None


def anonymous_client_id(key: str) -> str:
    """A stable client id for a key given without a name (never the key itself)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
