"""World Models' config rules (checked by common/config.py before anything is built) and its `discount=auto`."""
from omegaconf import ListConfig

from common.config import AgentRules, Rules, is_int


def config_rules(r: Rules):
    cfg = r.cfg
    r.choice("phase", ("a2c", "vision", "memory"))
    r.choice("encoder", ("auto", "conv", "mlp"))
    r.choice("value_loss", ("huber", "mse"))
    r.positive_int("codebook_size", "code_dim", "num_codes", "enc_dim", "cnn_depth", "memory_dim", "memory_layers",
                   "memory_heads", "window", "planning_horizon", "num_action_samples", "n_steps")
    r.check(is_int(cfg.memory_dim, 1) and is_int(cfg.memory_heads, 1) and cfg.memory_dim % cfg.memory_heads == 0,
            "memory_dim", f"must be divisible by memory_heads={cfg.memory_heads}")
    dims = list(cfg.controller_dims) if isinstance(cfg.controller_dims, ListConfig) else None
    r.check(bool(dims) and all(is_int(d, 1) for d in dims), "controller_dims",
            "must be a non-empty list of positive integers", dims if dims is not None else cfg.controller_dims)
    for key in ("commitment_coef", "vision_coef", "memory_coef", "reward_coef", "value_coef", "entropy_coef"):
        r.number(key, 0)
    r.number("lr", 0, low_open=True)
    r.number("grad_clip_norm", 0, low_open=True)
    r.number("gae_lambda", 0, 1)
    r.number("planning_weight", 0, 1)
    r.number("default_discount", 0, 1, low_open=True, high_open=True)
    for key in ("planning", "planning_bootstrap", "restart_dead_codes"):
        r.check(isinstance(cfg[key], bool), key, "must be true or false")
    r.check(not (cfg.planning is True and cfg.reward_coef == 0), "planning",
            "planning scores actions by predicted rewards, and reward_coef=0 leaves the reward predictor untrained: "
            "set reward_coef > 0 or planning=false")


def env_rules(r: Rules, spec):
    cfg = r.cfg
    image = len(spec.obs_shape) == 3
    r.check(not (image and cfg.encoder == "mlp"), "encoder",
            f"task {spec.task} has image observations {tuple(spec.obs_shape)}: use encoder=conv (or auto)")
    r.check(image or cfg.encoder != "conv", "encoder",
            f"task {spec.task} has vector observations {tuple(spec.obs_shape)}: use encoder=mlp (or auto)")
    if image and cfg.encoder != "mlp":
        r.check(all(n >= 16 and n % 16 == 0 for n in spec.obs_shape[1:]), "image_size",
                f"the conv VQ-VAE halves images four times: height and width must be multiples of 16, got "
                f"{tuple(spec.obs_shape)}")


def auto_discount(cfg, episode_length: int) -> float:
    """A fixed discount (`default_discount`), whatever the episode length."""
    return float(cfg.default_discount)


# the keys that change weight shapes: a checkpoint must agree on them
ARCHITECTURE_KEYS = ("enc_dim", "cnn_depth", "encoder", "codebook_size", "code_dim", "num_codes",
                     "memory_dim", "memory_layers", "memory_heads", "window", "controller_dims")

RULES = AgentRules(config_rules, env_rules, auto_discount, trainers=("onpolicy",),
                   architecture_keys=ARCHITECTURE_KEYS)
