"""Scripted and human opponents for the hockey game.

Written from the behavioural specification (``/work/shared/specs/hockey_env.md`` §10-§11);
no code of the original package was used.

``BasicOpponent`` deliberately draws from the *global* ``np.random`` state, like the original, so that
evaluation numbers are comparable (seed with ``np.random.seed`` before constructing it).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BasicOpponent", "HumanOpponent"]

_MAX_ANGLE = math.pi / 3
_SCALE = 60.0


class BasicOpponent:
    """Hand-written PD controller used as the standard sparring partner.

    ``rng``: ``None`` draws the random phase from the global ``np.random`` state like the original;
    pass e.g. ``np.random.RandomState(seed)`` for a private stream.

    ``act(obs)`` expects the observation from the opponent's own perspective (the player-one observation,
    or ``env.obs_agent_two()`` when it plays on the right) and returns a float64 array of 4 actions
    (3 without keep_mode). ``weak`` only changes the proportional gain (0.5 vs 10).
    """

    def __init__(self, weak: bool = True, keep_mode: bool = True, rng=None):
        self.weak = weak
        self.keep_mode = keep_mode
        # rng: None -> global np.random (as the original); or anything with .uniform(lo, hi), e.g. RandomState
        self.rng = rng
        self.phase = self._rng().uniform(0, np.pi)
        kp = 0.5 if weak else 10.0
        self.kp = kp
        self.kd = 0.5
        self._gains = np.array([kp, kp / 5, kp / 2])
        self._brake_time = np.array([0.1, 0.1, 0.1 * 10])

    def _rng(self):
        return np.random if self.rng is None else self.rng

    def act(self, obs, verbose: bool = False):
        obs = np.asarray(obs)
        p = np.array([obs[0], obs[1], obs[2]])
        v = np.array([obs[3], obs[4], obs[5]])
        qx, qy = float(obs[12]), float(obs[13])
        ux, uy = float(obs[14]), float(obs[15])
        self.phase += self._rng().uniform(0, 0.2)

        if ux < 30.0 / _SCALE:
            if p[0] < qx and abs(p[1] - qy) < 30.0 / _SCALE:
                dist = np.sqrt(np.sum((p[0:2] - np.array([qx, qy])) ** 2))
                target_x, target_y = qx + 0.2, qy + uy * dist * 0.1
            else:
                target_x, target_y = -210.0 / _SCALE, qy
        else:
            target_x, target_y = -210.0 / _SCALE, 0.0
        target_angle = _MAX_ANGLE * np.sin(self.phase)
        shoot = 1.0 if (self.keep_mode and 0 < obs[16] < 7) else 0.0

        error = np.array([target_x, target_y, target_angle]) - p
        brake = np.abs(error / (v + 0.01)) < self._brake_time
        action = np.clip(error * self._gains - v * brake * self.kd, -1, 1)
        if verbose:
            print(f"target ({target_x:.3f}, {target_y:.3f}, {target_angle:.3f}) error {error} action {action}")
        if self.keep_mode:
            return np.hstack([action, [shoot]])
        return action


class HumanOpponent:
    """Keyboard player (pygame, imported lazily). Arrow keys move, ``w``/``s`` turn, space shoots.

    ``player`` is 1 (left, red) or 2 (right, blue). The arrow keys act in screen directions for both players.
    """

    def __init__(self, env, player: int = 1):
        import pygame  # noqa: F401  (lazy: only needed when a human actually plays)

        self.env = env
        self.player = player
        self.a = 0
        if getattr(env, "screen", None) is None:
            env.render(mode="human")
        if player == 1:
            arrows = {"LEFT": 1, "UP": 4, "RIGHT": 2, "DOWN": 3}
        else:
            arrows = {"LEFT": 2, "UP": 3, "RIGHT": 1, "DOWN": 4}
        # later entries win when several keys are held
        self._keys = [
            (pygame.K_LEFT, arrows["LEFT"]),
            (pygame.K_UP, arrows["UP"]),
            (pygame.K_RIGHT, arrows["RIGHT"]),
            (pygame.K_DOWN, arrows["DOWN"]),
            (pygame.K_w, 5),
            (pygame.K_s, 6),
            (pygame.K_SPACE, 7),
        ]
        print("Human controls:")
        print(" left/right/up/down arrow: move in screen directions")
        print(" w: turn anti-clockwise, s: turn clockwise")
        print(" space: shoot (while holding the puck)")

    def act(self, obs):
        import pygame

        pygame.event.pump()
        pressed = pygame.key.get_pressed()
        action = 0
        for key, value in self._keys:
            if pressed[key]:
                action = value
        self.a = action
        return self.env.discrete_to_continous_action(action)
