"""The `app` step: render ios_template/ into a ready-to-open Xcode project for the bundle.

`render_app(build_dir, settings)` writes `app/<AppName>/`: the .xcodeproj (deterministic
object ids, the patched coreai-models wired in as a local Swift package), Info.plist and the
entitlements (plistlib), the Swift sources (jinja2; every value escaped for Swift) and the
bench prompt set. It renders on any machine; the engine package needs the pinned
apple/coreai-models checkout (see patches.py) and is reported pending when there is none.
"""


from ..swift_text import swift_string
from .render import TEMPLATE_DIR, render_app, template_fingerprint, write_prompt_set
from .step import (
    BUILTIN_PROMPTS,
    AppStep,
    bundle_name_for,
    ios_payload_checks,
    settings_from_build,
)
from .values import (
    APP_PLATFORMS,
    APP_SANDBOX_KEY,
    AUDIO_INPUT_KEY,
    BUNDLE_LOCATIONS,
    CORE_PACKAGE,
    ENGINE_PRODUCT,
    ENGINE_PRODUCTS,
    EXTENDED_VA_KEY,
    INCREASED_MEMORY_KEY,
    MICROPHONE_USAGE,
    MICROPHONE_USAGE_KEY,
    MIN_DEPLOYMENT,
    PLE_MODES,
    USER_SELECTED_READ_ONLY_KEY,
    AppPlatform,
    AppResult,
    AppSettings,
    AppTemplateError,
    EngineStatus,
    PromptSet,
    object_id,
    pbx_string,
    validate_app_name,
    validate_bundle_id,
    validate_choice,
    validate_deployment_target,
    validate_team_id,
)
from .xcode import check_project, entitlements, info_plist

__all__ = [
    "APP_PLATFORMS", "APP_SANDBOX_KEY", "AUDIO_INPUT_KEY", "USER_SELECTED_READ_ONLY_KEY", "AppPlatform",
    "BUILTIN_PROMPTS", "BUNDLE_LOCATIONS", "CORE_PACKAGE", "ENGINE_PRODUCT", "ENGINE_PRODUCTS", "EXTENDED_VA_KEY",
    "INCREASED_MEMORY_KEY", "MICROPHONE_USAGE", "MICROPHONE_USAGE_KEY", "MIN_DEPLOYMENT", "PLE_MODES", "TEMPLATE_DIR", "AppResult", "AppSettings", "AppStep",
    "AppTemplateError", "EngineStatus", "PromptSet", "bundle_name_for", "check_project", "entitlements",
    "info_plist", "ios_payload_checks", "object_id", "pbx_string", "render_app", "settings_from_build",
    "swift_string", "template_fingerprint", "validate_app_name", "validate_bundle_id", "validate_choice",
    "validate_deployment_target", "validate_team_id", "write_prompt_set",
]
