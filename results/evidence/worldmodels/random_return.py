"""The return of uniform random actions over 10 episodes, the baseline the agent's returns are read against:
PYTHONPATH=. python results/evidence/worldmodels/random_return.py task=gym/CarRacing-v3 action_repeat=4
(any train.py overrides; prints a CSV: episode, return, agent steps, then the mean and std)."""
import sys
import time

import common.config
from envs import make_env
from tests.conftest import compose

cfg = compose(["agent=worldmodels", *sys.argv[1:]])
env, spec = make_env(cfg)
common.config.validate_for_env(cfg, spec)
start, returns = time.time(), []
print("episode,return,agent_steps")
for episode in range(10):
    env.reset()
    done, ret, n = False, 0.0, 0
    while not done:
        _, reward, done, _ = env.step(env.rand_act())
        ret, n = ret + reward, n + 1
    returns.append(ret)
    print(f"{episode},{ret:.2f},{n}", flush=True)
mean = sum(returns) / len(returns)
std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
print(f"# mean {mean:.2f} std {std:.2f} ({' '.join(sys.argv[1:])}, seed {cfg.seed}, {time.time() - start:.0f} s)")
