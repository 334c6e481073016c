"""Trainers share the loop pieces (trainer/base.py); `make_trainer` picks the one named by `cfg.trainer`:
`online` (collect and update), `offline` (update from datasets, evaluate in the environment) or `onpolicy`
(rollouts from vector envs, one update each, no replay). Each builds its own buffer (`make_buffer`) and
does its own end-of-run work (`finish_run`), so train.py treats them alike."""
from trainer.offline_trainer import OfflineTrainer
from trainer.online_trainer import OnlineTrainer
from trainer.onpolicy_trainer import OnPolicyTrainer

TRAINERS = {"online": OnlineTrainer, "offline": OfflineTrainer, "onpolicy": OnPolicyTrainer}


def trainer_class(cfg):
    if cfg.trainer not in TRAINERS:
        raise ValueError(f"trainer={cfg.trainer!r}: unknown trainer; available: {', '.join(TRAINERS)}")
    return TRAINERS[cfg.trainer]


def make_trainer(cfg, env, spec, agent, buffer, logger, run_dir):
    return trainer_class(cfg)(cfg, env, spec, agent, buffer, logger, run_dir)
