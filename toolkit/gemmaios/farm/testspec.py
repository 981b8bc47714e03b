"""The Device Farm test spec: rendered from `data/farm/testspec.yml.j2`, checked against the
documented schema before it is uploaded (Device Farm developer guide, "Test spec reference and
syntax": `version` 0.1; optional `android_test_host`/`ios_test_host` strings; `phases` among
install, pre_test, test, post_test, each with a `commands` list of strings; `artifacts` a list of
paths, no wildcards; valid YAML without tabs)."""

from __future__ import annotations

from importlib import resources

import yaml

from .. import contract, xctest
from .errors import TestSpecInvalid

TEMPLATE = "farm/testspec.yml.j2"
PHASES = ("install", "pre_test", "test", "post_test")
TOP_LEVEL = {"version", "android_test_host", "ios_test_host", "phases", "artifacts"}
TRANSCRIPTS_DIR = "gemmaios-transcripts"  # under $DEVICEFARM_LOG_DIR; fetch looks for *.jsonl anywhere


def render_testspec(*, run_name: str, bundle_id: str, trials: int, ios_test_host: str | None = None) -> str:
    import jinja2

    source = resources.files("gemmaios").joinpath("data", TEMPLATE).read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    run_id = f"{run_name}-$DEVICEFARM_DEVICE_UDID"  # one transcript per device, named for it
    environment = xctest.runner_environment(run_id, trials, "$DEVICEFARM_DEVICE_UDID")
    text = env.from_string(source).render(
        run_name=run_name, bundle_id=bundle_id, ios_test_host=ios_test_host, environment=environment,
        test_identifier=xctest.TEST_IDENTIFIER, runs_dir=contract.APP_RUNS_DIR,
        transcripts_dir=TRANSCRIPTS_DIR, transcript=run_id + contract.TRANSCRIPT_SUFFIX)
    validate_testspec(text)
    return text


def validate_testspec(text: str) -> dict:
    """The parsed spec, or TestSpecInvalid naming the first rule it breaks."""
    def bad(problem: str) -> TestSpecInvalid:
        return TestSpecInvalid(f"test spec: {problem}",
                               hint="fix data/farm/testspec.yml.j2 (a gemmaios bug if you did not edit it)")

    if "\t" in text:
        raise bad("tabs are not allowed in a test spec")
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML ({exc})") from exc
    if not isinstance(spec, dict):
        raise bad("the top level must be a mapping")
    if unknown := set(spec) - TOP_LEVEL:
        raise bad(f"unknown top-level keys {sorted(unknown)}")
    if spec.get("version") != 0.1 or isinstance(spec.get("version"), str):
        raise bad(f"version must be the number 0.1, got {spec.get('version')!r}")
    for host in ("android_test_host", "ios_test_host"):
        if host in spec and not isinstance(spec[host], str):
            raise bad(f"{host} must be a string")
    phases = spec.get("phases")
    if not isinstance(phases, dict) or not phases:
        raise bad("phases must be a mapping of at least one phase")
    for name, phase in phases.items():
        if name not in PHASES:
            raise bad(f"unknown phase {name!r}; allowed: {', '.join(PHASES)}")
        if not isinstance(phase, dict) or set(phase) - {"commands"}:
            raise bad(f"phase {name} must be a mapping holding only `commands`")
        commands = phase.get("commands")
        if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
            raise bad(f"phase {name}: commands must be a list of non-empty strings")
    artifacts = spec.get("artifacts", [])
    if not isinstance(artifacts, list) or not all(isinstance(a, str) for a in artifacts):
        raise bad("artifacts must be a list of paths")
    if wild := [a for a in artifacts if any(ch in a for ch in "*?[")]:
        raise bad(f"artifact locations may not use wildcards: {wild}")
    return spec
