"""TD-MPC2's config rules (checked by common/config.py before anything is built) and its `discount=auto`."""
from common.config import AgentRules, Rules, is_int
from common.math import discount_from_episode_length
from common.tasks import is_multitask, task_list


def config_rules(r: Rules):
    cfg = r.cfg
    r.positive_int("iterations", "num_samples", "num_elites", "horizon", "batch_size", "latent_dim", "mlp_dim",
                   "enc_dim", "num_enc_layers", "simnorm_dim", "num_channels")
    r.check(is_int(cfg.num_pi_trajs), "num_pi_trajs", "must be a non-negative integer")
    r.check(is_int(cfg.num_elites) and is_int(cfg.num_samples) and cfg.num_elites <= cfg.num_samples,
            "num_elites", f"must not exceed num_samples={cfg.num_samples}")
    r.check(is_int(cfg.num_pi_trajs) and is_int(cfg.num_samples) and cfg.num_pi_trajs < cfg.num_samples,
            "num_pi_trajs", f"must be below num_samples={cfg.num_samples} (leave room for Gaussian samples)")
    r.check(is_int(cfg.num_q, 2), "num_q", "must be an integer >= 2 (targets take the min of two members)")
    r.check(is_int(cfg.num_bins, 2), "num_bins", "must be an integer >= 2")
    r.number("vmin")
    r.check(isinstance(cfg.vmax, (int, float)) and cfg.vmax > cfg.vmin, "vmax", f"must exceed vmin={cfg.vmin}")
    r.check(is_int(cfg.latent_dim, 1) and is_int(cfg.simnorm_dim, 1) and cfg.latent_dim % cfg.simnorm_dim == 0,
            "latent_dim", f"must be divisible by simnorm_dim={cfg.simnorm_dim}")
    r.number("min_std", 0, low_open=True)
    r.check(isinstance(cfg.max_std, (int, float)) and cfg.max_std >= cfg.min_std, "max_std",
            f"must be >= min_std={cfg.min_std}")
    for key in ("lr", "temperature", "grad_clip_norm", "updates_per_step"):
        r.number(key, 0, low_open=True)
    r.number("tau", 0, 1, low_open=True)
    r.number("rho", 0, 1, low_open=True)
    r.number("dropout", 0, 1, high_open=True)
    r.number("enc_lr_scale", 0)
    for key in ("entropy_coef", "consistency_coef", "reward_coef", "value_coef", "termination_coef"):
        r.number(key, 0)
    r.check(isinstance(cfg.mpc, bool), "mpc", "must be true or false")
    r.choice("entropy", ("scaled", "squashed", "scaled_tanh"))
    r.check(cfg.log_std_min < cfg.log_std_max, "log_std_min", f"must be below log_std_max={cfg.log_std_max}")
    r.number("discount_denom", 0, low_open=True)
    r.check(0 < cfg.discount_min <= cfg.discount_max < 1, "discount_min",
            f"need 0 < discount_min <= discount_max={cfg.discount_max} < 1")
    if is_multitask(cfg.task):
        r.positive_int("task_dim")


def env_rules(r: Rules, spec):
    r.check(not spec.discrete, "agent", f"TD-MPC2 needs continuous actions; task {spec.task} has discrete "
                                        "actions (use agent=dreamer)")
    if r.cfg.obs == "state":
        r.check(len(spec.obs_shape) == 1, "obs", f"state observations must be vectors, got {spec.obs_shape}")


def auto_discount(cfg, episode_length: int) -> float:
    """TD-MPC2's heuristic on the episode length (common/math.py)."""
    return discount_from_episode_length(episode_length, cfg.discount_denom, cfg.discount_min, cfg.discount_max)


def migrate(payload: dict) -> None:
    """Format version 1: checkpoints from before several tasks were single-task (their one task), and those from
    before the multi-discount heads had none."""
    agent, task = payload["agent"], payload["config"]["task"]
    agent.setdefault("tasks", task_list(task))
    if not payload.get("policy_only") and not agent.get("multi_gamma"):
        agent["multi_gamma"] = {"discounts": [], "head": None}


# the keys that change weight shapes: a checkpoint must agree on them (task_dim: with several tasks only)
ARCHITECTURE_KEYS = ("num_bins", "latent_dim", "mlp_dim", "enc_dim", "num_enc_layers", "num_q", "simnorm_dim",
                     "num_channels", "task_dim")

RULES = AgentRules(config_rules, env_rules, auto_discount, multitask=True, heads=("multi_gamma",),
                   architecture_keys=ARCHITECTURE_KEYS, migrate=migrate)
