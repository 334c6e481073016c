import pytest

from common.config import ConfigError
from tests.conftest import ROOT, compose


def _error(*overrides) -> str:
    with pytest.raises(ConfigError) as e:
        compose(list(overrides))
    return str(e.value)


def test_default_config_is_valid_and_frozen():
    cfg = compose()
    assert cfg.agent == "tdmpc2" and cfg.latent_dim == 128  # model_size 1 preset
    with pytest.raises(Exception):
        cfg.horizon = 5


def test_model_size_presets_and_direct_override():
    assert compose(["model_size=5"]).latent_dim == 512
    assert compose(["model_size=317"]).num_q == 8
    assert compose(["model_size=5", "latent_dim=256"]).latent_dim == 256
    assert "model_size=7" in _error("model_size=7")


def test_unknown_task_lists_available():
    msg = _error("task=cheetah-runn")
    assert "cheetah-run" in msg and "gym/" in msg and "hockey" in msg


@pytest.mark.parametrize("override,key,rule", [
    ("horizon=0", "horizon=0", "positive integer"),
    ("num_elites=600", "num_elites=600", "must not exceed num_samples=512"),
    ("num_pi_trajs=512", "num_pi_trajs=512", "below num_samples"),
    ("latent_dim=100", "latent_dim=100", "divisible by simnorm_dim=8"),
    ("tau=1.5", "tau=1.5", "(0, 1]"),
    ("num_q=1", "num_q=1", ">= 2"),
    ("discount=1.2", "discount=1.2", "(0, 1)"),
    ("obs=rgb task=gym/Pendulum-v1", "obs='rgb'", "DeepMind Control"),
    ("steps=-5", "steps=-5", "positive integer"),
    ("entropy=gaussian", "entropy='gaussian'", "one of scaled, squashed, scaled_tanh"),
])
def test_validation_names_key_value_and_rule(override, key, rule):
    msg = _error(*override.split())
    assert key in msg and rule in msg


def test_all_broken_rules_reported_together():
    msg = _error("horizon=0", "batch_size=0")
    assert "horizon=0" in msg and "batch_size=0" in msg


def test_tdmpc2_rejects_discrete_actions():
    from common.config import validate_for_env
    from envs import make_env
    cfg = compose(["task=gym/CartPole-v1"])
    _, spec = make_env(cfg)
    with pytest.raises(ConfigError, match="continuous actions"):
        validate_for_env(cfg, spec)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_file_composes_and_validates(name):
    """Each `+experiment=` recipe is a valid config as shipped: it passes the rules, and every key it sets exists
    in the composed config without it (Hydra merges a misspelt key from a file silently)."""
    from omegaconf import OmegaConf
    recipe = OmegaConf.load(ROOT / "conf" / "experiment" / f"{name}.yaml")
    full = compose([f"+experiment={name}"])
    base = compose([f"agent={full.agent}", f"trainer={full.trainer}"], validate=False)  # the groups it overrides

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if OmegaConf.is_dict(value) and OmegaConf.is_dict(OmegaConf.select(base, path)):
                yield from leaves(value, path + ".")
            else:
                yield path
    unknown = [k for k in leaves(recipe) if k.split(".")[0] not in ("defaults", "hydra")
               and OmegaConf.select(base, k, default="<missing>") == "<missing>"]
    assert not unknown, f"+experiment={name} sets keys the config does not have: {unknown}"
