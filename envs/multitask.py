"""Several tasks behind one environment interface, for one multi-task TD-MPC2 agent.

`MultitaskEnv` owns one `TorchEnv` per task. Observations are zero-padded to the largest observation dim and
actions to the largest action dim: the agent always sees and emits vectors of the padded sizes, and the env
slices an action to its task's own dims before stepping. Each `reset()` moves to the next task in a fixed
round-robin order (task 0, 1, ..., n-1, 0, ...): every task gets the same share of the data, and the order is
reproducible without an RNG (the online trainer restores the position on resume: episode k plays task k mod n).
`reset(task=i)` plays task i without moving the rotation (evaluation). `task_id` is the current task.

Task sets are named lists of tasks, defined once in common/tasks.py: `task=mt3-cartpole` is the same as
`task=[cartpole-balance,cartpole-swingup,pendulum-swingup]`.
"""
import torch
import torch.nn.functional as F

from envs.hooks import TaskHooks


class MultitaskEnv:
    """`reset(task=None) -> obs`, `step(action) -> (obs, reward, done, info)`, `rand_act()`, `render()`,
    `task_id`, like `envs.wrappers.TorchEnv`, over several tasks (see the module docstring)."""

    def __init__(self, envs: list, obs_dims: list[int], action_dims: list[int]):
        self.envs, self.obs_dims, self.action_dims = envs, list(obs_dims), list(action_dims)
        self.obs_dim, self.action_dim = max(obs_dims), max(action_dims)
        self.discrete = False
        self.task_id = 0
        self.next_task = 0  # the round-robin position: the task the next plain reset() plays

    @property
    def env(self):
        """The current task's TorchEnv."""
        return self.envs[self.task_id]

    def reset(self, task: int | None = None) -> torch.Tensor:
        if task is None:
            task, self.next_task = self.next_task, (self.next_task + 1) % len(self.envs)
        self.task_id = task
        return self._pad_obs(self.env.reset())

    def step(self, action: torch.Tensor):
        obs, reward, done, info = self.env.step(action[: self.action_dims[self.task_id]])
        return self._pad_obs(obs), reward, done, info

    def rand_act(self) -> torch.Tensor:
        """A uniform random action of the current task, zero on the padded dims."""
        return F.pad(self.env.rand_act(), (0, self.action_dim - self.action_dims[self.task_id]))

    def _pad_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return F.pad(obs, (0, self.obs_dim - obs.shape[-1]))  # (obs_dim,), zeros after the task's own dims

    def render(self):
        return self.env.render()

    def rng_state(self) -> list:
        return [env.rng_state() for env in self.envs]  # the task rotation is restored from the episode count

    def seeded_rng_state(self, seed: int) -> list:
        return [env.seeded_rng_state(seed + i) for i, env in enumerate(self.envs)]  # as make_env seeds them

    def set_rng_state(self, state: list) -> None:
        for env, s in zip(self.envs, state):
            env.set_rng_state(s)

    def close(self):
        for env in self.envs:
            env.close()


class MultitaskHooks(TaskHooks):
    """On resume, the round-robin rotation continues where it was: training episode k plays task k mod n."""

    def __init__(self, env, num_tasks: int):
        self.env, self.num_tasks = env, num_tasks

    def load_state_dict(self, trainer_state: dict) -> None:
        self.env.next_task = trainer_state["episode"] % self.num_tasks
