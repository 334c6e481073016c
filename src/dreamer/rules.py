"""Dreamer's config rules (checked by common/config.py before anything is built) and its `discount=auto`."""
import warnings

from common.config import AgentRules, Rules, is_int


def config_rules(r: Rules):
    cfg = r.cfg
    r.positive_int("deter", "hidden", "layers", "stoch", "groups", "classes", "cnn_depth", "horizon", "batch_size",
                   "seq_len")
    r.choice("latent", ("categorical", "gaussian"))
    r.choice("act", ("silu", "elu", "mish"))
    r.choice("reward_head", ("twohot", "mse"))
    r.choice("critic_head", ("twohot", "mse"))
    r.choice("actor_grad", ("auto", "reinforce", "dynamics", "both"))
    r.choice("actor_reg", ("entropy", "kl_uniform"))
    r.choice("actor_dist", ("tanh_normal", "normal_clip"))
    r.choice("critic_target", ("online", "slow"))
    r.choice("advantage_norm", ("retnorm", "batch", "none"))
    r.number("model_weight_decay", 0)
    r.number("ac_weight_decay", 0)
    if cfg.train_every is not None:  # set: it wins over train_ratio
        r.check(is_int(cfg.train_every, 1), "train_every", "must be null (train_ratio decides) or a positive "
                                                            "integer (one update every N agent steps)")
    r.check(is_int(cfg.num_bins, 2), "num_bins", "must be an integer >= 2")
    r.number("vmin")
    r.check(isinstance(cfg.vmax, (int, float)) and cfg.vmax > cfg.vmin, "vmax", f"must exceed vmin={cfg.vmin}")
    for key in ("unimix", "actor_unimix"):
        r.number(key, 0, 1, high_open=True)
    r.number("latent_min_std", 0, low_open=True)
    r.number("actor_min_std", 0, low_open=True)
    r.check(isinstance(cfg.actor_max_std, (int, float)) and cfg.actor_max_std >= cfg.actor_min_std,
            "actor_max_std", f"must be >= actor_min_std={cfg.actor_min_std}")
    for key in ("dyn_scale", "rep_scale", "free_nats", "dec_scale", "reward_scale", "cont_scale", "actor_entropy",
                "critic_slowreg"):
        r.number(key, 0)
    for key in ("model_lr", "actor_lr", "critic_lr", "model_eps", "ac_eps", "model_grad_clip", "actor_grad_clip",
                "critic_grad_clip", "train_ratio"):
        r.number(key, 0, low_open=True)
    r.number("default_discount", 0, 1, low_open=True, high_open=True)
    r.number("return_lambda", 0, 1)
    r.number("actor_grad_mix", 0, 1)
    r.number("critic_ema", 0, 1, low_open=True)
    r.number("retnorm_rate", 0, 1, low_open=True)
    if cfg.aux_heads.enabled is True and cfg.aux_rewards.enabled is True and cfg.actor_grad in ("auto", "dynamics"):
        warnings.warn(f"aux_rewards.enabled=true with actor_grad={cfg.actor_grad}: on continuous actions the actor "
                      "learns by backpropagating returns through the dynamics, and the auxiliary rewards carry no "
                      "gradient, so they reach the actor only through the critic; actor_grad=reinforce (as in "
                      "+experiment=hockey_dreamer_aux) or both feeds them to it directly")


def env_rules(r: Rules, spec):
    shape = tuple(spec.obs_shape)
    r.check(len(shape) == 1 or (len(shape) == 3 and shape[1:] == (64, 64)), "obs",
            f"Dreamer needs vector or (C, 64, 64) image observations, got {shape}")


def auto_discount(cfg, episode_length: int) -> float:
    """DreamerV3's fixed discount, whatever the episode length."""
    return float(cfg.default_discount)


def migrate(payload: dict) -> None:
    """Format version 1: a training checkpoint from before the update counter existed counted 0 updates."""
    if not payload.get("policy_only"):
        payload["agent"].setdefault("updates", 0)


# the keys that change weight shapes: a checkpoint must agree on them
ARCHITECTURE_KEYS = ("num_bins", "deter", "hidden", "layers", "stoch", "groups", "classes", "latent",
                     "cnn_depth", "reward_head", "critic_head")

RULES = AgentRules(config_rules, env_rules, auto_discount, heads=("aux_rewards",),
                   architecture_keys=ARCHITECTURE_KEYS, migrate=migrate)
