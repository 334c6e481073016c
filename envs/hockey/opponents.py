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

    def _rng(self):
        return np.random if self.rng is None else self.rng

    def act(self, obs, verbose: bool = False):
        # Plain Python floats (bit-identical to the element-wise numpy formulation, but ~5x faster); only the
        # sine goes through numpy so that it matches np.sin exactly.
        o = obs.tolist() if isinstance(obs, np.ndarray) else [float(x) for x in obs]
        px, py, pa, vx, vy, va = o[0], o[1], o[2], o[3], o[4], o[5]
        qx, qy, ux, uy = o[12], o[13], o[14], o[15]
        self.phase += self._rng().uniform(0, 0.2)

        if ux < 30.0 / _SCALE:
            if px < qx and abs(py - qy) < 30.0 / _SCALE:
                dx, dy = px - qx, py - qy
                dist = math.sqrt(dx * dx + dy * dy)
                tx, ty = qx + 0.2, qy + uy * dist * 0.1
            else:
                tx, ty = -210.0 / _SCALE, qy
        else:
            tx, ty = -210.0 / _SCALE, 0.0
        ta = float(_MAX_ANGLE * np.sin(self.phase))
        shoot = 1.0 if (self.keep_mode and 0 < o[16] < 7) else 0.0

        kp, kd = self.kp, self.kd
        action = []
        for e, v, gain, brake_time in ((tx - px, vx, kp, 0.1), (ty - py, vy, kp / 5, 0.1),
                                       (ta - pa, va, kp / 2, 0.1 * 10)):
            den = v + 0.01
            brake = den != 0 and abs(e / den) < brake_time  # |e/0| is inf or nan: no braking
            a = e * gain - v * kd if brake else e * gain
            action.append(-1.0 if a < -1 else 1.0 if a > 1 else a)
        if verbose:
            print(f"target ({tx:.3f}, {ty:.3f}, {ta:.3f}) action {action} shoot {shoot}")
        if self.keep_mode:
            action.append(shoot)
        return np.array(action)


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
