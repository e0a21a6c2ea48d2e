"""One settings object: defaults, then `<data dir>/config.json`, then `AISTACK_*` variables.

The data dir itself comes from `AISTACK_DATA_DIR` or platformdirs, since the
config file lives inside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_settings
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

APP_NAME = "aistack"


class SettingsError(Exception):
    """A setting has a bad value; the message names the setting."""


def default_data_dir() -> Path:
    env = os.environ.get("AISTACK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class Settings(BaseSettings):
    """Every setting of the app. Environment variable = `AISTACK_` + field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="AISTACK_", extra="ignore", validate_default=True)

    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(11500, ge=1, le=65535, description="TCP port of the HTTP server.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Models, logs, config and admin token.")

    model_keep_alive_sec: float = Field(
        300, ge=-1, description="Idle seconds before a model loaded by a request is unloaded; -1 keeps it for ever."
    )
    model_load_timeout_sec: float = Field(180, gt=0, description="Longest a model may take to load in its runner.")
    cancel_grace_sec: float = Field(3, gt=0, description="How long a cancelled job may take to stop before its runner is killed.")
    busy_retry_after_sec: int = Field(5, ge=1, description="Retry-After sent with the busy 503.")
    queue_wait_sec: float = Field(
        0, ge=0, description="Longest a request waits in a busy model's queue before it gets the busy 503; "
        "0 waits as long as the client stays connected."
    )
    queue_max: int = Field(16, ge=0, description="Requests that may wait in one model's queue; one more gets the busy 503.")
    memory_reserve_mb: int = Field(1024, ge=0, description="RAM kept free for the system when deciding whether a model fits.")
    vram_reserve_mb: int = Field(512, ge=0, description="GPU memory kept free for the desktop and games when placing a model.")
    game_mode: bool = Field(False, description="Watch the GPU and step aside (unload, hold GPU loads) while a game uses it.")
    game_mode_vram_share: float = Field(
        0.25, gt=0, le=1, description="Game mode starts when other programs hold more than this share of GPU memory."
    )
    game_mode_gpu_busy_percent: int = Field(
        70, ge=1, le=100, description="Game mode also starts when the GPU is this busy while aistack runs nothing on it."
    )
    game_mode_interval_sec: float = Field(3, ge=0.2, description="How often game mode reads the GPU.")
    game_mode_hold: Literal["cpu", "wait"] = Field(
        "cpu", description="While a game runs, new models load on the CPU ('cpu') or wait with a 503 ('wait')."
    )

    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra Origins (e.g. https://app.example) allowed to call the server from a browser."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bound to the network: extra Host names (e.g. aistack.lan) clients may use, besides this machine's "
        "own names and addresses.",
    )
    api_key: str | None = Field(
        None, description="If set, every /v1, admin and metrics request needs 'Authorization: Bearer <key>'."
    )
    http_header_timeout_sec: float = Field(
        10, gt=0, description="A request line and headers must arrive within this many seconds of their first byte."
    )
    http_body_timeout_sec: float = Field(
        60, gt=0, description="A request body that stops arriving for this many seconds gets 408 and is closed."
    )
    http_idle_timeout_sec: float = Field(
        5, gt=0, description="A connection with no request in progress is closed after this many idle seconds."
    )
    http_max_connections: int = Field(
        256, ge=1, description="Open connections beyond this get a 503 busy answer and are closed."
    )
    max_body_mb: float = Field(32, gt=0, description="Largest JSON request body.")
    max_upload_mb: float = Field(2048, gt=0, description="Largest uploaded audio or video file.")
    max_audio_sec: float = Field(4 * 3600, gt=0, description="Longest audio a transcription accepts.")
    max_tts_chars: int = Field(100_000, gt=0, description="Longest text speech synthesis accepts.")

    llm_context: int = Field(4096, ge=256, description="Default context window for chat models (catalog may lower it).")
    llm_threads: int = Field(0, ge=0, description="CPU threads for llama.cpp; 0 means the physical core count.")
    llm_parallel: int = Field(
        0, ge=0, le=64, description="Chat requests one chat model decodes together (its parallel sequences, each with "
        "its own context); 0 picks 4 on a GPU and one per physical core (2 to 4) on a CPU. Fewer load when memory is short."
    )
    llm_stream_interval_ms: float = Field(
        20, ge=0, le=1000,
        description="Streamed chat text is sent at most this often; tokens that come faster travel together "
        "(each send costs CPU the model needs). 0 sends every token on its own.",
    )
    engines: dict[str, str] = Field(
        default_factory=dict,
        description='Extra engines, as JSON {"name": "module:Class"}; a model manifest names its engine.',
    )
    voice_map: dict[str, str] = Field(
        default_factory=dict, description="OpenAI voice name -> installed voice id, overriding the built-in table."
    )

    obs_metrics: bool = Field(True, description="Keep request metrics in memory (dashboard, /admin/api/metrics, /metrics).")
    obs_access_log: bool = Field(True, description="Write one JSON line per request.")
    obs_payload: bool = Field(False, description="Capture request and response bodies to disk (for debugging).")
    obs_log_dir: Path | None = Field(None, description="Access log folder; default <data dir>/logs.")
    obs_payload_dir: Path | None = Field(None, description="Payload capture folder; default <data dir>/captures.")
    obs_payload_max_gb: float = Field(5, gt=0, description="Captures beyond this total size are removed, oldest first.")
    obs_payload_max_days: float = Field(7, gt=0, description="Captures older than this many days are removed.")
    obs_payload_body_max_mb: float = Field(
        10, gt=0, description="A captured body is cut at this size and marked truncated in its meta.json."
    )
    obs_metrics_window_min: float = Field(60, gt=0, le=24 * 60, description="Minutes of requests the metrics cover.")

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Later sources lose: explicit arguments, then the environment, then config.json.
        return (init_settings, env_settings, ConfigFileSource(settings_cls))

    # Derived locations -------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def log_dir(self) -> Path:
        return self.obs_log_dir or self.data_dir / "logs"

    @property
    def capture_dir(self) -> Path:
        return self.obs_payload_dir or self.data_dir / "captures"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads `<data dir>/config.json`; keys are field names (`port`, `model_keep_alive_sec`, ...)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = default_data_dir() / "config.json"
        self._data: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError) as exc:
                raise SettingsError(f"{path} is not valid JSON ({exc}). Fix or delete it.") from exc
            if not isinstance(loaded, dict):
                raise SettingsError(f"{path} must hold a JSON object of settings.")
            self._data = {str(k).lower(): v for k, v in loaded.items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into a message that names the setting."""
    try:
        return Settings(**overrides)
    except pydantic_settings.SettingsError as exc:
        # A value that should be JSON (e.g. AISTACK_ENGINES, AISTACK_VOICE_MAP) is not.
        raise SettingsError(f"Invalid setting: {exc}. Dict settings take JSON, e.g. '{{\"alloy\": \"voice-id\"}}'.") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"AISTACK_{name.upper()} (config key '{name}'): {err['msg']}, got {err.get('input')!r}")
        raise SettingsError("Invalid setting: " + "; ".join(problems)) from None
