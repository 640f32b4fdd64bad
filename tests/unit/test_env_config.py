"""`switchboard serve` without a config file: the providers the environment's conventions make,
parsed as a real config (env_config.py)."""

from __future__ import annotations

from pathlib import Path

from switchboard.env_config import config_from_environment, environment_yaml, providers_from_environment


def names(environ: dict[str, str]) -> list[str]:
    return [p.name for p in providers_from_environment(environ)]


def test_nothing_in_the_environment_is_a_config_without_providers(tmp_path: Path) -> None:
    cfg = config_from_environment({}, tmp_path)
    assert cfg.providers == {} and cfg.models == {}
    assert cfg.auth.master_key is None
    assert cfg.store_url == "sqlite:///switchboard.db" and cfg.base_dir == tmp_path  # SQLite in the working dir
    assert cfg.warnings == []


def test_openai_key_alone_is_api_openai_com(tmp_path: Path) -> None:
    cfg = config_from_environment({"OPENAI_API_KEY": "sk-real", "SWITCHBOARD_MASTER_KEY": "sk-master"}, tmp_path)
    p = cfg.providers["openai"]
    assert (p.type, p.base_url, [k.value for k in p.keys]) == ("openai", "https://api.openai.com/v1", ["sk-real"])
    assert p.list_models is True
    # what the parser derives from the URL applies, as for a config file
    assert p.responses == "native" and p.forward_unknown_params is False
    assert cfg.auth.master_key == "sk-master"


def test_openai_base_url_without_key_is_a_keyless_compatible_server(tmp_path: Path) -> None:
    cfg = config_from_environment({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, tmp_path)
    p = cfg.providers["openai"]
    assert p.base_url == "http://127.0.0.1:8000/v1" and p.keys == [] and p.responses == "bridge"


def test_anthropic(tmp_path: Path) -> None:
    cfg = config_from_environment({"ANTHROPIC_API_KEY": "sk-ant", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/"},
                                  tmp_path)
    p = cfg.providers["anthropic"]
    assert (p.type, p.base_url, p.keys[0].value) == ("anthropic", "http://127.0.0.1:9", "sk-ant")
    assert config_from_environment({"ANTHROPIC_BASE_URL": "http://x"}, tmp_path).providers == {}  # a URL alone: no


def test_local_servers_and_their_url_forms(tmp_path: Path) -> None:
    env = {
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434",  # as Open WebUI spells it: no /v1
        "VLLM_BASE_URL": "127.0.0.1:8000",  # no scheme either
        "VLLM_API_KEY": "vllm-token",  # vLLM's own variable for its --api-key
        "LMSTUDIO_BASE_URL": "http://127.0.0.1:1234/v1/",
    }
    cfg = config_from_environment(env, tmp_path)
    assert list(cfg.providers) == ["ollama", "vllm", "lmstudio"]
    assert cfg.providers["ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert cfg.providers["vllm"].base_url == "http://127.0.0.1:8000/v1"
    assert [k.value for k in cfg.providers["vllm"].keys] == ["vllm-token"]
    assert cfg.providers["lmstudio"].base_url == "http://127.0.0.1:1234/v1"
    for p in cfg.providers.values():
        assert p.type == "openai" and p.list_models is True
        assert p.timeout_s == 300  # a local server may load the model on the first request


def test_generic_convention_names_the_provider(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_GROQ_BASE_URL": "https://api.groq.com/openai/v1", "SWITCHBOARD_GROQ_API_KEY": "gsk",
           "SWITCHBOARD_MY_BOX_BASE_URL": "http://10.0.0.2:8080", "SWITCHBOARD_MASTER_KEY": "m",
           "SWITCHBOARD_NOKEY_API_KEY": "ignored without a URL"}
    cfg = config_from_environment(env, tmp_path)
    assert list(cfg.providers) == ["groq", "my_box"]
    assert cfg.providers["groq"].base_url == "https://api.groq.com/openai/v1"
    assert cfg.providers["groq"].keys[0].value == "gsk"
    assert cfg.providers["my_box"].base_url == "http://10.0.0.2:8080/v1" and cfg.providers["my_box"].keys == []


def test_generic_convention_replaces_a_conventional_provider_of_the_same_name(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-1", "SWITCHBOARD_OPENAI_BASE_URL": "http://127.0.0.1:7/v1"}
    cfg = config_from_environment(env, tmp_path)
    assert list(cfg.providers) == ["openai"]
    assert cfg.providers["openai"].base_url == "http://127.0.0.1:7/v1" and cfg.providers["openai"].keys == []


def test_empty_variables_count_as_unset() -> None:
    assert names({"OPENAI_API_KEY": "", "OLLAMA_BASE_URL": "  ", "SWITCHBOARD_X_BASE_URL": ""}) == []


def test_the_yaml_text_holds_no_secret() -> None:
    env = {"OPENAI_API_KEY": "sk-secret-1", "ANTHROPIC_API_KEY": "sk-secret-2", "VLLM_BASE_URL": "http://h:1/v1",
           "VLLM_API_KEY": "sk-secret-3", "SWITCHBOARD_MASTER_KEY": "sk-secret-4"}
    text = environment_yaml(env)
    assert "secret" not in text
    assert '"${OPENAI_API_KEY}"' in text and '"${SWITCHBOARD_MASTER_KEY}"' in text


def test_a_model_is_reachable_as_provider_slash_model(tmp_path: Path) -> None:
    from switchboard.routing.routes import RouteTable

    cfg = config_from_environment({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, tmp_path)
    table = RouteTable(cfg, cfg.providers)
    assert table.knows("openai/gpt-4o-mini") and not table.knows("gpt-4o-mini")
