from pathlib import Path

import pytest
import yaml

from rag.config import Settings, load_settings
from rag.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "rag" / "configs"


def test_default_yaml_matches_the_documented_defaults():
    on_disk = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    assert Settings.model_validate(on_disk) == Settings()


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Settings.__mro__[1]):
                yield from walk(annotation)
            else:
                yield name, field.description

    undocumented = [name for name, description in walk(Settings) if not description]
    assert undocumented == []


def test_unknown_key_names_key_and_file(tmp_path):
    (tmp_path / "default.yaml").write_text("retrieval:\n  kk: 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_dir=tmp_path, env={})
    message = str(err.value)
    assert "retrieval.kk" in message and "unknown key" in message and "default.yaml" in message


def test_wrong_type_names_key(tmp_path):
    (tmp_path / "default.yaml").write_text("retrieval:\n  k: many\n")
    with pytest.raises(ConfigError, match=r"retrieval\.k"):
        load_settings(config_dir=tmp_path, env={})


def test_profile_overrides_default_and_env_overrides_profile(tmp_path):
    (tmp_path / "default.yaml").write_text("retrieval:\n  k: 5\n  candidates: 40\n")
    (tmp_path / "small.yaml").write_text("retrieval:\n  k: 2\n")
    assert load_settings("small", config_dir=tmp_path, env={}).retrieval.k == 2
    assert load_settings("small", config_dir=tmp_path, env={}).retrieval.candidates == 40
    env = {"RAG_RETRIEVAL__K": "7", "RAG_PROFILE": "small"}
    assert load_settings(config_dir=tmp_path, env=env).retrieval.k == 7


def test_env_typo_is_an_error_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="RAG_RETRIEVAL__KAY"):
        load_settings(config_dir=tmp_path, env={"RAG_RETRIEVAL__KAY": "3"})


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*known: .*default"):
        load_settings("nope", env={})


def test_broken_yaml_names_file_and_line(tmp_path):
    (tmp_path / "default.yaml").write_text("retrieval:\n  k: [1, 2\n")
    with pytest.raises(ConfigError, match=r"default\.yaml:\d+: not valid YAML"):
        load_settings(config_dir=tmp_path, env={})


def test_overrides_win(tmp_path):
    settings = load_settings(config_dir=tmp_path, env={}, overrides={"index.path": "/x/y", "retrieval.k": 9})
    assert settings.index.path == "/x/y" and settings.retrieval.k == 9


@pytest.mark.parametrize("profile", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_profile_loads(profile):
    settings = load_settings(profile, env={})
    if profile == "test":
        assert settings.index.batch_papers == 8
