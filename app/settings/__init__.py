"""The service's settings, in sections: loaded once by the application builder
(`load_settings`) and handed down section by section.

    settings = load_settings("configs", "dev")
    settings.serving.triton.start_timeout_s

Secrets (database passwords, S3 keys, tokens) come from the environment or from files
(`ML_<NAME>_FILE`), and `redact` keeps them out of log lines and error bodies.
"""

from app.settings.lifecycle import (
    DiagnosticsSettings,
    MetricRuleSettings,
    MonitoringSettings,
    PolicySettings,
    RegistrySettings,
)
from app.settings.loader import (
    ENV_NESTING,
    ENV_PREFIX,
    Settings,
    load_settings,
    settings_fingerprint,
)
from app.settings.platform import (
    ApiSettings,
    AuthSettings,
    FeatureSettings,
    MlflowSettings,
    OidcSettings,
    PlacementSettings,
    StateSettings,
    StorageSettings,
    TokenEntry,
    TrainingSettings,
)
from app.settings.secrets import (
    MASK,
    redact,
    remember_environment,
    remember_secrets,
    remember_settings,
)
from app.settings.section import Section, SettingsError
from app.settings.serving import (
    AbTestSettings,
    CanarySettings,
    FeedbackSettings,
    LlmSettings,
    ServingSettings,
    TritonSettings,
)

__all__ = [
    "ENV_NESTING",
    "ENV_PREFIX",
    "MASK",
    "AbTestSettings",
    "ApiSettings",
    "AuthSettings",
    "CanarySettings",
    "DiagnosticsSettings",
    "FeatureSettings",
    "FeedbackSettings",
    "LlmSettings",
    "MetricRuleSettings",
    "MlflowSettings",
    "OidcSettings",
    "PlacementSettings",
    "MonitoringSettings",
    "PolicySettings",
    "RegistrySettings",
    "Section",
    "ServingSettings",
    "Settings",
    "SettingsError",
    "StateSettings",
    "StorageSettings",
    "TokenEntry",
    "TrainingSettings",
    "TritonSettings",
    "load_settings",
    "redact",
    "remember_environment",
    "remember_secrets",
    "remember_settings",
    "settings_fingerprint",
]
