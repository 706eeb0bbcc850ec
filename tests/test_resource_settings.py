"""The engine and store resources carry the factories' settings as nested Dagster config:
declared once (photogen_pipelines/factories.py), settable in the UI, with the serverless
keys as environment variables that only a run resolves."""

from __future__ import annotations

import dagster as dg

from photogen_pipelines.definitions import build_defs
from photogen_pipelines.factories import StyleEngineSettings
from resources import StyleEngine, StyleEngineConfig

TOKEN_VARIABLE = "PHOTOGEN_REPLICATE_API_TOKEN"


def test_a_serverless_key_is_its_environment_variable_in_the_config_and_the_key_in_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, "r8_secret")
    styles = build_defs(str(tmp_path / "home"), engine="replicate").resources["styles"]
    assert styles.settings.api_key == dg.EnvVar(TOKEN_VARIABLE) and isinstance(styles.settings.api_key, dg.EnvVar)
    seen = {}

    @dg.asset
    def probe(styles: StyleEngine) -> None:
        seen["settings"] = styles.engine_settings()

    assert dg.materialize([probe], resources={"styles": styles}).success
    assert seen["settings"].api_key == "r8_secret" and seen["settings"].backend == "replicate"
    assert type(seen["settings"]) is StyleEngineSettings  # the factories' own class: their cache key


def test_run_config_sets_the_nested_settings_and_the_options_beside_them():
    seen = {}

    @dg.asset
    def probe(styles: StyleEngine) -> None:
        seen["settings"], seen["proof_long_side"] = styles.engine_settings(), styles.proof_long_side

    config = {"resources": {"styles": {"config": {"settings": {"threads": 1}, "proof_long_side": 512}}}}
    assert dg.materialize([probe], resources={"styles": StyleEngine()}, run_config=config).success
    assert seen == {"settings": StyleEngineSettings(threads=1), "proof_long_side": 512}
    assert StyleEngine(settings=StyleEngineConfig(threads=1)).engine_settings() == StyleEngineSettings(threads=1)
