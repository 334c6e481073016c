"""Shared test helpers: compose and validate a config the way train.py does, with tiny model sizes."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import torch  # noqa: E402

import common.config  # noqa: E402  (registers the preset resolver before any compose)
import src  # noqa: E402,F401  (registers the agents and their config rules)
from common.memory import keep_freed_memory  # noqa: E402

keep_freed_memory()  # the allocator setting train.py uses: the tests' eager ops cost less

# one thread: CI machines have 2 cores, and several processes (a training subprocess, pytest) share them
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# small enough for CPU tests, same structure as the real presets
TINY_TDMPC2 = ["model_size=1", "latent_dim=32", "mlp_dim=64", "enc_dim=64", "num_samples=32", "num_elites=4",
               "num_pi_trajs=4", "iterations=2", "batch_size=16"]


def compose(overrides=(), validate=True):
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    return common.config.validate(cfg) if validate else cfg


@pytest.fixture
def tiny_tdmpc2():
    """(cfg, env, spec, agent) for TD-MPC2 on gym/Pendulum-v1 with tiny sizes."""
    from envs import make_env
    from src import make_agent

    def build(*overrides, task="gym/Pendulum-v1", device="cpu"):
        torch.manual_seed(0)
        cfg = compose([f"task={task}", *TINY_TDMPC2, *overrides])
        env, spec = make_env(cfg)
        common.config.validate_for_env(cfg, spec)
        return cfg, env, spec, make_agent(cfg, spec, torch.device(device))
    return build


def run_train(args, cwd, timeout=600, **kwargs):
    """Run train.py in a subprocess (one thread, no progress bar); returns the CompletedProcess."""
    import subprocess
    import sys
    cmd = [sys.executable, str(ROOT / "train.py"), "threads=1", "logger.progress=false", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)


def random_episode(env, spec) -> torch.Tensor:
    """One episode of random actions in the buffer's step layout (the first step carries a zero action)."""
    from common.buffer import episode_step
    obs = env.reset()
    steps = [episode_step(obs, torch.zeros(spec.action_dim), 0.0, False, True)]
    done = False
    while not done:
        a = env.rand_act()
        obs, r, done, info = env.step(a)
        steps.append(episode_step(obs, a, r, info["terminated"], False))
    return torch.stack(steps)


def pytest_collection_modifyitems(items):
    # `heavy` tests first (a stable sort keeps the order otherwise): with one worker per core (`make test`) a
    # several-minute test started last would leave the other workers idle at the end
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
