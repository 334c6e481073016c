"""Trainers share the loop pieces; `make_trainer` picks the one named by `cfg.trainer`."""


def make_trainer(cfg, env, spec, agent, buffer, logger, run_dir):
    if cfg.trainer == "online":
        from trainer.online_trainer import OnlineTrainer
        return OnlineTrainer(cfg, env, spec, agent, buffer, logger, run_dir)
    raise ValueError(f"trainer={cfg.trainer!r}: unknown trainer")
