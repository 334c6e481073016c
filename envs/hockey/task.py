"""Bridge from the two-player hockey game to a single-agent gymnasium task for the framework.

``make_hockey_env(...)`` returns a :class:`HockeyTask`: the learner sends a 4-dim action in [-1, 1]
(fx, fy, torque, shoot in its own frame) and receives an 18-dim float32 observation from its own perspective;
the opponent acts inside ``step``.

Options
-------
opponent
    ``"weak"`` / ``"strong"``: :class:`~envs.hockey.opponents.BasicOpponent` (kp 0.5 / 10) with a private,
    seeded random state (the original draws from global ``np.random``; the control law is identical and
    verified against the reference traces). ``"none"``: the other player sends zero actions.
    ``"checkpoint"``: needs ``opponent_policy`` (``envs.make_env`` builds it from ``hockey.opponent_checkpoint``).
    ``"selfplay"``: needs ``opponent_policy`` (``envs.make_env`` builds an
    :class:`~envs.hockey.selfplay.OpponentPool` from ``selfplay.*``).
    ``opponent_policy`` (a callable ``obs -> action``; the obs is from the opponent's own perspective, its
    4 actions are in its own frame) overrides ``opponent``; if it has a ``reset()`` method that is called at
    the start of each episode.
mode
    ``"normal"`` (251 steps), ``"shooting"`` or ``"defense"`` (81 steps; the drills are defined for the left
    player, so the learner always plays left there whatever ``side`` says).
reward
    ``"sparse"``: the game's own reward from the learner's perspective: +10 win / -10 loss on the final
    step plus the game's built-in closeness-to-puck shaping (``reward_closeness_to_puck``, about -13 per
    episode for a random player; the original env always includes it).
    ``"shaped"``: sparse + ``SHAPING_WEIGHTS["touch"] * reward_touch_puck``
    + ``SHAPING_WEIGHTS["direction"] * reward_puck_direction`` with the default weights
    ``touch = 0.25`` (per catch; at most ~17 catches per 251-step game, so it can never out-earn a goal) and
    ``direction = 5.0`` (``reward_puck_direction`` is ``v_x / (25 T)`` in the learner's frame, so a shot at
    40 units/s towards the opponent goal earns about +0.03 per step in NORMAL). ``shaping_weights`` overrides.
    ``"outcome"``: win/loss only, +1 on the final step of a won game, -1 of a lost one, 0 on every other step
    and for a draw (no closeness shaping): the bounded sparse reward the simplified Dreamer plan assumes.
side
    ``"alternate"`` (default): the learner plays left in even episodes and right in odd ones (as player two it
    sees ``obs_agent_two()`` and acts in its mirrored frame; the game is point-symmetric). Because the game
    itself alternates which side gets the puck first, the bridge sets ``one_starting`` explicitly so that the
    learner cycles through all four (side, puck-side) combinations: puck on the learner's half in episodes
    0, 1, 4, 5, ..., on the opponent's half in episodes 2, 3, 6, 7, ...  ``"left"``: always player one, the
    game alternates the puck side as in the original (first episode: puck on the opponent's half).
backend
    ``"ours"`` (default): :mod:`envs.hockey.hockey_env`. ``"original"``: the ``hockey`` package
    (``hockey.hockey_env``), ImportError with instructions if missing. ``"auto"``: original if importable.
seed
    Seeds the bridge's generator; each reset draws the game's reset seed from it (the original re-seeds
    from OS entropy on every unseeded reset, so this is what makes runs reproducible). ``reset(seed=s)``
    re-seeds it, re-seeds the opponent and restarts the side schedule at episode 0. The opponent's random
    phase uses a generator derived from the same seed.
timeout
    ``"terminated"`` (default, as the game reports it) or ``"truncated"``: report the draw at the time limit
    as ``truncated=True, terminated=False``.
drills
    NORMAL only: a :class:`Drills` (``hockey.drills``) that makes some training episodes a shooting or
    defense drill (81 steps, learner on the left, the opponent as keeper or shooter) instead of a full game,
    drawn at each reset from the bridge's generator; within ``drills.evaluating()`` every episode is a full game.

Info keys (every step)
----------------------
``winner`` (+1 learner scored, -1 opponent scored, 0 none/draw), ``mode`` (the episode's: "normal",
"shooting" or "defense"), ``goals_for`` / ``goals_against`` (0 or 1;
the game ends at the first goal, so at the final step they give the episode's score), ``success`` (1.0 on
a winning final step, else 0.0), ``side`` ("left"/"right"), ``reward_closeness_to_puck``,
``reward_touch_puck``, ``reward_puck_direction`` (learner's perspective), ``sparse_reward``.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .opponents import BasicOpponent

__all__ = ["make_hockey_env", "HockeyTask", "Drills", "SHAPING_WEIGHTS", "MODES", "load_backend"]

SHAPING_WEIGHTS = {"touch": 0.25, "direction": 5.0}
MODES = {"normal": "NORMAL", "shooting": "TRAIN_SHOOTING", "defense": "TRAIN_DEFENSE"}

def load_backend(backend: str = "ours"):
    """Return the module that provides ``HockeyEnv`` and ``Mode`` for ``backend``."""
    if backend not in ("ours", "original", "auto"):
        raise ValueError(f"backend must be 'ours', 'original' or 'auto', not {backend!r}")
    if backend in ("original", "auto"):
        try:
            return importlib.import_module("hockey.hockey_env")
        except ImportError as e:
            if backend == "original":
                raise ImportError(
                    "backend='original' needs the original package `hockey` (module hockey.hockey_env), which is "
                    "not importable here: install it (pip install git+https://github.com/martius-lab/hockey-env) "
                    "or use backend='ours' (bit-identical on the reference traces)") from e
    from . import hockey_env

    return hockey_env


class _ZeroOpponent:
    def __init__(self, n: int = 4):
        self._a = np.zeros(n)

    def act(self, obs):
        return self._a


class Drills:
    """A curriculum of the game's training modes inside full-game training: each training episode is a shooting
    drill with probability `shooting`, a defense drill with probability `defense`, else a full game. Why: the
    drills put the puck before the learner's racket (shooting, against a keeper) or on its goal (defense) in
    81 steps, so a frame of training holds more shots and saves than a full game's. `evaluating()` pauses
    them, so every evaluation is a full game; the env and the training hooks share one instance."""

    def __init__(self, shooting: float = 0.0, defense: float = 0.0):
        if not (0 <= shooting <= 1 and 0 <= defense <= 1 and shooting + defense <= 1):
            raise ValueError(f"drill probabilities must be in [0, 1] and sum to at most 1, not shooting={shooting}, "
                             f"defense={defense}")
        self.shooting, self.defense = float(shooting), float(defense)
        self._paused = False

    def mode(self, rng: np.random.Generator) -> str:
        """The next episode's mode; draws from `rng` only outside evaluation."""
        if self._paused:
            return "normal"
        u = rng.random()
        return "shooting" if u < self.shooting else "defense" if u < self.shooting + self.defense else "normal"

    @contextlib.contextmanager
    def evaluating(self):
        self._paused = True
        try:
            yield self
        finally:
            self._paused = False


class _CallableOpponent:
    def __init__(self, policy: Callable):
        self.policy = policy

    def reset(self):
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def act(self, obs):
        return np.asarray(self.policy(obs), dtype=np.float64).reshape(-1)[:4]


class HockeyTask(gym.Env):
    """Single-agent view of the hockey game; see the module docstring for the options."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(self, opponent: str = "weak", mode: str = "normal", reward: str = "sparse",
                 side: str = "alternate", backend: str = "ours", seed: int | None = None,
                 opponent_policy: Callable | None = None,
                 shaping_weights: dict | None = None, timeout: str = "terminated", drills: Drills | None = None,
                 render_mode: str | None = "rgb_array", env_kwargs: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, not {mode!r}")
        if reward not in ("sparse", "shaped", "outcome"):
            raise ValueError(f"reward must be 'sparse', 'shaped' or 'outcome', not {reward!r}")
        if side not in ("alternate", "left"):
            raise ValueError(f"side must be 'alternate' or 'left', not {side!r}")
        if timeout not in ("terminated", "truncated"):
            raise ValueError(f"timeout must be 'terminated' or 'truncated', not {timeout!r}")
        if opponent not in ("weak", "strong", "none", "checkpoint", "selfplay"):
            raise ValueError(f"opponent must be 'weak', 'strong', 'none', 'checkpoint' or 'selfplay', not {opponent!r}")
        if drills is not None and mode != "normal":
            raise ValueError(f"drills replace full games: they need mode='normal', not {mode!r}")
        self.backend = load_backend(backend)
        self.backend_name = "original" if self.backend.__name__.startswith("hockey.") else "ours"
        self.mode_name = mode
        self.reward_kind = reward
        self.side = side if mode == "normal" else "left"
        self.timeout = timeout
        self.render_mode = render_mode
        self.weights = dict(SHAPING_WEIGHTS, **(shaping_weights or {}))
        self.drills = drills
        self.episode_mode = mode

        self.game = self.backend.HockeyEnv(keep_mode=True, mode=getattr(self.backend.Mode, MODES[mode]),
                                           **(env_kwargs or {}))
        self.max_episode_steps = (250 if mode == "normal" else 80) + 1  # the game ends on step T+1

        self._np_random, _ = gym.utils.seeding.np_random(seed)
        self._rng = self._np_random
        opp_rng = np.random.RandomState(self._rng.integers(2**31))
        if opponent in ("checkpoint", "selfplay") and opponent_policy is None:
            # the framework's factory (envs.make_env) builds it from hockey.opponent_checkpoint / selfplay.*
            raise ValueError(f"opponent={opponent!r} needs opponent_policy=callable(obs) -> action")
        self.opponent_policy = opponent_policy
        if opponent_policy is not None:
            self.opponent = _CallableOpponent(opponent_policy)
            self.opponent_name = "policy"
        elif opponent == "none":
            self.opponent = _ZeroOpponent()
            self.opponent_name = "none"
        else:
            self.opponent = BasicOpponent(weak=(opponent == "weak"), rng=opp_rng)
            self.opponent_name = opponent

        self.action_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (18,), dtype=np.float32)
        self.episode = -1
        self.learner_left = True
        self._t = 0

    # ------------------------------------------------------------------------------------------------------
    def _learner_obs(self, obs1):
        obs = obs1 if self.learner_left else self.game.obs_agent_two()
        return np.asarray(obs, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # re-seed everything and restart the side schedule
            super().reset(seed=seed)
            self._rng = self.np_random
            if isinstance(self.opponent, BasicOpponent):
                self.opponent.rng = np.random.RandomState(self._rng.integers(2**31))
                self.opponent.phase = self.opponent.rng.uniform(0, np.pi)
            self.episode = -1
        self.episode += 1
        one_starting = None
        if self.drills is not None:  # the game's mode is read at reset (the original's reset(mode=) fails)
            self.episode_mode = self.drills.mode(self._rng)
            self.game.mode = getattr(self.backend.Mode, MODES[self.episode_mode])
        if self.episode_mode != "normal":  # a drill: defined for the left player; the side schedule goes on
            self.learner_left = True
        elif self.side == "alternate":
            self.learner_left = self.episode % 2 == 0
            puck_on_learner_half = (self.episode // 2) % 2 == 0
            one_starting = self.learner_left == puck_on_learner_half
        else:  # the original's schedule (first episode: puck on the opponent's half), restarted by seeding
            self.learner_left = True
            one_starting = self.episode % 2 == 1
        game_seed = int(self._rng.integers(2**31))
        obs1, _ = self.game.reset(one_starting=one_starting, seed=game_seed)
        self._obs1 = obs1
        if hasattr(self.opponent, "reset"):
            self.opponent.reset()
        self._t = 0
        self._goals = (0, 0)
        return self._learner_obs(obs1), {"side": "left" if self.learner_left else "right", "winner": 0,
                                         "goals_for": 0, "goals_against": 0}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(4)
        game = self.game
        if self.learner_left:
            a_opp = np.asarray(self.opponent.act(game.obs_agent_two()), dtype=np.float64).reshape(4)
            full = np.concatenate([a, a_opp])
        else:  # the opponent is player one and sees the player-one observation
            a_opp = np.asarray(self.opponent.act(self._obs1), dtype=np.float64).reshape(4)
            full = np.concatenate([a_opp, a])
        obs1, r1, terminated, truncated, info1 = game.step(full)
        self._obs1 = obs1
        self._t += 1
        if self.learner_left:
            info, r = info1, r1
            winner = info1["winner"]
        else:
            info = game.get_info_agent_two()
            r = game.get_reward_agent_two(info)
            winner = info["winner"]
        sparse = float(r)
        if self.reward_kind == "shaped":
            r = sparse + self.weights["touch"] * info["reward_touch_puck"] + \
                self.weights["direction"] * info["reward_puck_direction"]
        done = bool(terminated or truncated)
        if self.reward_kind == "outcome":  # the game reports a winner only on the step that ends it
            r = float(winner) if done else 0.0
        if done and winner == 0 and self.timeout == "truncated":
            terminated, truncated = False, True
        out = {
            "winner": int(winner),
            "goals_for": int(winner == 1),
            "goals_against": int(winner == -1),
            "success": float(done and winner == 1),
            "side": "left" if self.learner_left else "right",
            "mode": self.episode_mode,
            "sparse_reward": sparse,
            "reward_closeness_to_puck": info["reward_closeness_to_puck"],
            "reward_touch_puck": info["reward_touch_puck"],
            "reward_puck_direction": info["reward_puck_direction"],
        }
        return self._learner_obs(obs1), float(r), bool(terminated), bool(truncated), out

    def rng_state(self) -> dict:
        """The bridge's generator (it draws each game's reset seed), the side schedule's episode count and a
        BasicOpponent's random state and phase; a policy opponent's state is its own (a self-play pool's
        is in the trainer's state). The game itself is re-seeded at every reset."""
        state = {"rng": self._rng.bit_generator.state, "episode": self.episode}
        if isinstance(self.opponent, BasicOpponent):
            state["opponent"] = {"rng": self.opponent.rng.get_state(), "phase": self.opponent.phase}
        return state

    def set_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.episode = state["episode"]
        if "opponent" in state and isinstance(self.opponent, BasicOpponent):
            self.opponent.rng.set_state(state["opponent"]["rng"])
            self.opponent.phase = state["opponent"]["phase"]

    def render(self):
        if self.render_mode is None:
            return None
        return self.game.render(mode=self.render_mode)

    def close(self):
        self.game.close()


def make_hockey_env(opponent: str = "weak", mode: str = "normal", reward: str = "sparse",
                    side: str = "alternate", backend: str = "ours", seed: int | None = None,
                    opponent_policy: Callable | None = None, **kwargs) -> HockeyTask:
    """Single-agent hockey task for the framework; see this module's docstring for every option.

    Extra keyword arguments go to :class:`HockeyTask` (``opponent_checkpoint``, ``shaping_weights``,
    ``timeout``, ``render_mode``, ``env_kwargs`` -- e.g. ``env_kwargs={"fix_bugs": True}`` with backend ours).
    """
    return HockeyTask(opponent=opponent, mode=mode, reward=reward, side=side, backend=backend, seed=seed,
                      opponent_policy=opponent_policy, **kwargs)
