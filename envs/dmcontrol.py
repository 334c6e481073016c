"""DeepMind Control Suite state/pixel tasks as gymnasium environments (`domain-task`)."""
import ctypes.util
import os

import gymnasium as gym
import numpy as np

# MuJoCo renders (pixels, videos) headless through EGL, which Mesa also provides without a GPU. Choose it
# before dm_control is first imported, unless the user chose a backend or there is no EGL at all.
if ctypes.util.find_library("EGL"):
    os.environ.setdefault("MUJOCO_GL", "egl")


def dmc_tasks() -> list[str]:
    from dm_control import suite
    return sorted(f"{domain.replace('_', '-')}-{task.replace('_', '-')}" for domain, task in suite.ALL_TASKS)


def _split(task: str) -> tuple[str, str]:
    from dm_control import suite
    for domain, name in suite.ALL_TASKS:
        if f"{domain.replace('_', '-')}-{name.replace('_', '-')}" == task:
            return domain, name
    raise ValueError(f"unknown DeepMind Control task {task!r}")


class DMControlEnv(gym.Env):
    """One dm_control task with flattened float32 observations, or (3*frame_stack, size, size) uint8
    pixels with `pixels=True`. Time-limit ends are `truncated`; `terminated` only if the task says so
    (discount 0 at the last step)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, seed: int, pixels: bool = False, image_size: int = 64, frame_stack: int = 3):
        from dm_control import suite
        domain, name = _split(task)
        self._env = suite.load(domain, name, task_kwargs={"random": seed})
        self.pixels, self.image_size, self.frame_stack = pixels, image_size, frame_stack
        spec = self._env.action_spec()
        self._action_low, self._action_high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        if pixels:
            shape = (3 * frame_stack, image_size, image_size)
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
            self._frames = []
        else:
            dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.render_mode = "rgb_array"
        self.max_episode_steps = int(round(self._env._step_limit))  # frames per episode (1000)

    def _obs(self, time_step):
        if not self.pixels:
            return np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in time_step.observation.values()])
        frame = self.render(self.image_size, self.image_size).transpose(2, 0, 1)  # (3, H, W)
        self._frames = (self._frames + [frame])[-self.frame_stack:]
        while len(self._frames) < self.frame_stack:
            self._frames.insert(0, frame)
        return np.concatenate(self._frames, 0)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:  # dm_control draws start states from the task's RandomState, not np_random
            self._env.task.random.seed(seed)
        self._frames = []
        return self._obs(self._env.reset()), {}

    def step(self, action):
        # rescale [-1, 1] to the task's own bounds
        action = self._action_low + (np.asarray(action, np.float32) + 1) * 0.5 * (self._action_high - self._action_low)
        ts = self._env.step(action)
        terminated = bool(ts.last() and ts.discount == 0)
        return self._obs(ts), float(ts.reward or 0.0), terminated, bool(ts.last() and not terminated), {}

    def rng_state(self) -> dict:
        """dm_control draws initial states from the task's own RandomState (gymnasium's np_random is unused)."""
        return {"task_random": self._env.task.random.get_state()}

    def set_rng_state(self, state: dict) -> None:
        self._env.task.random.set_state(state["task_random"])

    def render(self, height: int = 384, width: int = 384):
        return self._env.physics.render(height, width, camera_id=0)
