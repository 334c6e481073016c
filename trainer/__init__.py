"""Trainers share the loop pieces (trainer/base.py); `make_trainer` picks the one named by `cfg.trainer`:
`online` (collect and update), `offline` (update from datasets, evaluate in the environment) or `onpolicy`
(rollouts from vector envs, one update each, no replay)."""


def make_trainer(cfg, env, spec, agent, buffer, logger, run_dir):
    if cfg.trainer == "online":
        from trainer.online_trainer import OnlineTrainer
        return OnlineTrainer(cfg, env, spec, agent, buffer, logger, run_dir)
    if cfg.trainer == "offline":
        from trainer.offline_trainer import OfflineTrainer
        return OfflineTrainer(cfg, env, spec, agent, buffer, logger, run_dir)
    if cfg.trainer == "onpolicy":
        from trainer.onpolicy_trainer import OnPolicyTrainer
        return OnPolicyTrainer(cfg, env, spec, agent, buffer, logger, run_dir)
    raise ValueError(f"trainer={cfg.trainer!r}: unknown trainer")
