"""Wrappers that give every task the same interface: torch tensors in and out, actions in [-1, 1]
(or one-hot for discrete spaces), action repeat, and a uniform info dict."""
import gymnasium as gym
import numpy as np
import torch


class RescaleAction(gym.ActionWrapper):
    """Map actions from [-1, 1] to a Box action space's bounds."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._low, self._high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    def action(self, action):
        return self._low + (np.asarray(action) + 1) * 0.5 * (self._high - self._low)


class ActionRepeat(gym.Wrapper):
    """Repeat each action `repeat` times (frame skip), summing the rewards; stops at an episode end."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class ImageObservation(gym.ObservationWrapper):
    """(H, W, C) uint8 frames -> (C, size, size) uint8, area-resized (size None: (C, H, W) as they are): the
    layout of the pixel encoders (DeepMind Control pixels are (C, 64, 64))."""

    def __init__(self, env: gym.Env, size: int | None):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.size = (h, w) if size is None else (size, size)
        self.observation_space = gym.spaces.Box(0, 255, (c, *self.size), np.uint8)

    def observation(self, obs):
        x = torch.from_numpy(np.ascontiguousarray(obs)).permute(2, 0, 1).float().unsqueeze(0)  # (1, C, H, W)
        if x.shape[-2:] != self.size:
            x = torch.nn.functional.interpolate(x, size=self.size, mode="area")
        return x.squeeze(0).round().clamp(0, 255).to(torch.uint8).numpy()


class TorchEnv:
    """gymnasium env -> torch. `reset() -> obs`, `step(action) -> (obs, reward, done, info)` with
    info carrying `terminated`, `truncated` and `success` (plus the env's own info entries). Time-limit
    truncation is not termination. Repeats each action `action_repeat` times, summing rewards. Continuous
    actions are clipped to [-1, 1] here (Dreamer's actor_dist=normal_clip sends unbounded Gaussian samples)."""

    def __init__(self, env: gym.Env, action_repeat: int, seed: int):
        self.env, self.action_repeat = ActionRepeat(env, action_repeat), action_repeat
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.action_dim = int(env.action_space.n) if self.discrete else int(np.prod(env.action_space.shape))
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        env.action_space.seed(seed)

    @property
    def unwrapped(self) -> gym.Env:
        """The innermost gymnasium env (gymnasium's name for it): the task object itself, below every wrapper."""
        return self.env.unwrapped

    def reset(self) -> torch.Tensor:
        seed, self._seed = self._seed, None  # seed only the first reset; later resets continue the RNG
        obs, _ = self.env.reset(seed=seed)
        return self._tensor(obs)

    def step(self, action: torch.Tensor):
        action = action.detach().cpu().numpy()
        env_action = int(action.argmax()) if self.discrete else np.clip(action, -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        info = dict(info, terminated=bool(terminated), truncated=bool(truncated and not terminated),
                    success=float(info.get("success", 0.0)))
        return self._tensor(obs), reward, bool(terminated or truncated), info

    def rand_act(self) -> torch.Tensor:
        if self.discrete:
            return torch.nn.functional.one_hot(torch.tensor(int(self._rng.integers(self.action_dim))),
                                               self.action_dim).float()
        return torch.from_numpy(self._rng.uniform(-1, 1, self.action_dim).astype(np.float32))

    def render(self):
        return self.env.render()

    def rng_state(self) -> dict:
        """Every random state that decides what the env does next, for checkpoints (taken between episodes):
        the random-action generator, whether the first reset still has to seed the env, the action space's
        generator, and the env's own (`rng_state()` of envs that define it, else gymnasium's `np_random`)."""
        env = self.unwrapped
        own = env.rng_state() if hasattr(env, "rng_state") else None
        if own is None and getattr(env, "_np_random", None) is not None:
            own = {"np_random": env._np_random.bit_generator.state}
        space = self.env.action_space._np_random
        return {"rand_act": self._rng.bit_generator.state, "first_reset_seed": self._seed, "env": own,
                "action_space": space.bit_generator.state if space is not None else None}

    def seeded_rng_state(self, seed: int) -> dict:
        """A state for `set_rng_state` that starts a stream of its own, as an env built with `seed` would: its
        next reset re-seeds the env (gymnasium's `reset(seed=...)`) and random actions come from `seed`."""
        return {**self.rng_state(), "rand_act": np.random.default_rng(seed).bit_generator.state,
                "first_reset_seed": seed}

    def set_rng_state(self, state: dict) -> None:
        env = self.unwrapped
        self._rng.bit_generator.state = state["rand_act"]
        self._seed = state["first_reset_seed"]
        if state["action_space"] is not None:
            self.env.action_space.np_random.bit_generator.state = state["action_space"]
        if state["env"] is not None and hasattr(env, "set_rng_state"):
            env.set_rng_state(state["env"])
        elif state["env"] is not None:
            env.np_random.bit_generator.state = state["env"]["np_random"]

    @staticmethod
    def _tensor(obs) -> torch.Tensor:
        obs = np.asarray(obs)
        return torch.from_numpy(obs if obs.dtype == np.uint8 else obs.astype(np.float32))

    def close(self):
        self.env.close()
