"""Two-player air hockey ("laser hockey") on pybox2d 2.3.

A re-implementation written from the behavioural specification ``/work/shared/specs/hockey_env.md`` of the
Tübingen ``hockey`` package (``hockey.hockey_env``, v2.6); no code of that package was used. With pybox2d
2.3.10 it reproduces the reference episodes recorded from the original bit for bit (see
``tests/test_hockey_env.py``), so policies transfer in both directions.

The original's quirks are kept by default (policies were trained against them); each can be switched off with
``HockeyEnv(fix_bugs=...)`` -- see :data:`BUG_FIXES` and ``envs/hockey/README.md``.
"""

from __future__ import annotations

import math
import warnings
from enum import Enum
from typing import Iterable

import Box2D
import gymnasium as gym
import numpy as np
from Box2D import b2CircleShape as circleShape
from Box2D import b2ContactListener, b2Vec2
from Box2D import b2FixtureDef as fixtureDef
from Box2D import b2PolygonShape as polygonShape
from gymnasium import spaces
from gymnasium.utils import EzPickle, seeding

from .opponents import BasicOpponent, HumanOpponent

__all__ = [
    "Mode",
    "HockeyEnv",
    "HockeyEnv_BasicOpponent",
    "BasicOpponent",
    "HumanOpponent",
    "BUG_FIXES",
    "FPS",
    "SCALE",
    "VIEWPORT_W",
    "VIEWPORT_H",
]

# ---------------------------------------------------------------------------------------------------------
# constants (spec §1.1)
FPS = 50
SCALE = 60.0  # pixels per Box2D unit
VIEWPORT_W = 600
VIEWPORT_H = 480
W = VIEWPORT_W / SCALE  # 10
H = VIEWPORT_H / SCALE  # 8
CENTER_X = W / 2
CENTER_Y = H / 2
ZONE = W / 20
MAX_ANGLE = math.pi / 3
MAX_TIME_KEEP_PUCK = 15
GOAL_SIZE = 75
RACKETFACTOR = 1.2
FORCEMULTIPLIER = 6000
TORQUEMULTIPLIER = 400
SHOOTFORCEMULTIPLIER = 60
MAX_PUCK_SPEED = 25
MAX_PLAYER_SPEED = 10
DT = 1.0 / FPS
VELOCITY_ITERATIONS = 6 * 30
POSITION_ITERATIONS = 2 * 30

# player polygon in pixels (P1 orientation: flat face at +x)
RACKETPOLY = [(-10, 20), (5, 20), (5, -20), (-10, -20), (-18, -10), (-21, 0), (-18, 10)]

COLOR_P1 = (235, 98, 53)
COLOR_P2 = (93, 158, 199)
COLOR_GOAL_AREA = (239, 203, 138)
COLOR_CENTER = (204, 204, 204)

# body tags (stored in Box2D userData, used by the contact listener)
_TAG_P1, _TAG_P2, _TAG_PUCK, _TAG_GOAL1, _TAG_GOAL2 = 1, 2, 3, 4, 5

# float32 offsets subtracted from the raw state vector to get the observation (positions relative to centre)
_OBS_OFFSET = np.array([CENTER_X, CENTER_Y, 0, 0, 0, 0, CENTER_X, CENTER_Y, 0, 0, 0, 0,
                        CENTER_X, CENTER_Y, 0, 0, 0, 0], dtype=np.float32)
# obs_agent_two = obs[_PERM2] * _SIGN2 (180 degree point mirror, counters swapped)
_PERM2 = np.array([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 17, 16])
_SIGN2 = np.array([-1, -1, 1, -1, -1, 1, -1, -1, 1, -1, -1, 1, -1, -1, -1, -1, 1, 1], dtype=np.float64)

#: Names accepted by ``HockeyEnv(fix_bugs=...)``. ``fix_bugs=True`` enables all of them.
BUG_FIXES = {
    "reset_mode": "reset(mode=...) switches the mode instead of raising TypeError",
    "obs_dtype": "observations are float32, matching the declared observation space (original: float64)",
    "obs_space": "without keep_mode the declared observation space has 16 dims (original: always 18)",
    "discrete_space": "discrete_action_space is Discrete(8) with keep_mode so that 'shoot' (7) is included",
    "counters_reset": "reset() clears the possession counters (original: a running counter survives reset)",
    "truncation": "a time-out is reported as truncated=True, terminated=False (original: terminated=True)",
    "fresh_world": "every reset builds a new Box2D world, so reset(seed=s) + the same actions always give the same "
                   "episode (original: one world whose broad-phase state depends on the number of earlier resets)",
}


class Mode(Enum):
    NORMAL = 0
    TRAIN_SHOOTING = 1
    TRAIN_DEFENSE = 2


def _to_mode(value) -> Mode:
    if isinstance(value, Mode):
        return value
    if isinstance(value, str):
        try:
            return Mode[value]
        except KeyError:
            raise ValueError(f"unknown hockey mode name {value!r}; expected one of {[m.name for m in Mode]}")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Mode(int(value))  # raises ValueError for unknown values
    raise TypeError(f"mode must be a Mode, int or str, not {type(value).__name__}")


class _ContactListener(b2ContactListener):
    """Goal detection and puck catching; fires inside ``world.Step`` on contact *begin* only."""

    def __init__(self, env: "HockeyEnv"):
        b2ContactListener.__init__(self)
        self.env = env

    def BeginContact(self, contact):
        ta = contact.fixtureA.body.userData
        tb = contact.fixtureB.body.userData
        if ta == _TAG_PUCK:
            other = tb
        elif tb == _TAG_PUCK:
            other = ta
        else:
            return
        env = self.env
        if other == _TAG_GOAL2:
            env.done = True
            env.winner = 1
            if env.verbose:
                print("Player 1 scored")
        elif other == _TAG_GOAL1:
            env.done = True
            env.winner = -1
            if env.verbose:
                print("Player 2 scored")
        elif env.keep_mode and other == _TAG_P1:
            if env.player1_has_puck == 0 and env.puck.linearVelocity.x < 0.1:
                env.player1_has_puck = MAX_TIME_KEEP_PUCK
        elif env.keep_mode and other == _TAG_P2:
            if env.player2_has_puck == 0 and env.puck.linearVelocity.x > -0.1:
                env.player2_has_puck = MAX_TIME_KEEP_PUCK

    def EndContact(self, contact):
        pass


def _parse_fixes(fix_bugs) -> frozenset:
    if fix_bugs is True:
        return frozenset(BUG_FIXES)
    if not fix_bugs:
        return frozenset()
    if isinstance(fix_bugs, str):
        fix_bugs = [fix_bugs]
    fixes = frozenset(fix_bugs)
    unknown = fixes - set(BUG_FIXES)
    if unknown:
        raise ValueError(f"unknown bug fix(es) {sorted(unknown)}; known: {sorted(BUG_FIXES)}")
    return fixes


class HockeyEnv(gym.Env, EzPickle):
    """Two-player air hockey. ``step`` takes both players' actions (8 values with keep_mode).

    Player one (left, red) gets the observation returned by ``reset``/``step``; player two (right, blue) gets
    ``obs_agent_two()`` (the point-mirrored view) and acts in its own mirrored frame, so one policy can play
    both sides.

    Args:
        keep_mode: puck possession and shooting (4 actions per player instead of 3).
        mode: ``Mode`` / int / name: NORMAL (250+1 steps), TRAIN_SHOOTING or TRAIN_DEFENSE (80+1 steps).
        verbose: print a line when a goal is scored.
        render_mode: ``None``, ``"human"`` or ``"rgb_array"`` (default for ``render()`` without argument).
        fix_bugs: ``False`` (default, behave exactly like the original), ``True`` (fix all), or an iterable of
            names from :data:`BUG_FIXES`.
    """

    metadata = {"render.modes": ["human", "rgb_array"], "render_modes": ["human", "rgb_array"], "render_fps": FPS}
    continuous = False

    def __init__(self, keep_mode: bool = True, mode=Mode.NORMAL, verbose: bool = False,
                 render_mode: str | None = None, fix_bugs: bool | Iterable[str] = False):
        EzPickle.__init__(self, keep_mode=keep_mode, mode=mode, verbose=verbose, render_mode=render_mode,
                          fix_bugs=fix_bugs)
        self.fixes = _parse_fixes(fix_bugs)
        self.render_mode = render_mode
        self.seed()
        self.screen = None
        self.clock = None
        self.surf = None
        self.isopen = True
        self.mode = mode
        self.keep_mode = keep_mode
        self.verbose = verbose
        self.player1_has_puck = 0
        self.player2_has_puck = 0

        self.world = Box2D.b2World(gravity=(0, 0), doSleep=True)
        self.player1 = None
        self.player2 = None
        self.puck = None
        self.goal_player_1 = None
        self.goal_player_2 = None
        self.world_objects = []
        self.drawlist = []
        self.done = False
        self.winner = 0
        self.one_starts = True  # the original's name; ``one_starting`` is an alias
        self.timeStep = DT
        self.time = 0
        self.max_timesteps = None
        self.closest_to_goal_dist = 1000  # unused leftover, kept for API compatibility
        self.prev_shaping = None

        self.num_actions = 4 if keep_mode else 3
        obs_dim = 18 if (keep_mode or "obs_space" not in self.fixes) else 16
        obs_dtype = np.float32
        self._obs_dtype = np.float32 if "obs_dtype" in self.fixes else np.float64
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=obs_dtype)
        self.action_space = spaces.Box(-1, +1, (self.num_actions * 2,), dtype=np.float32)
        n_discrete = 8 if (keep_mode and "discrete_space" in self.fixes) else 7
        self.discrete_action_space = spaces.Discrete(n_discrete)

        self.reset(self.one_starts)

    # ------------------------------------------------------------------------------------------------------
    # mode / seeding
    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value) -> None:
        self._mode = _to_mode(value)

    @property
    def one_starting(self) -> bool:
        """Alias of ``one_starts`` (named like ``reset``'s argument)."""
        return self.one_starts

    @one_starting.setter
    def one_starting(self, value: bool) -> None:
        self.one_starts = value

    def seed(self, seed=None):
        """Re-create the generator: ``np.random.default_rng(seed)``, OS entropy for None. Returns ``[seed]``."""
        self.np_random, self._seed = seeding.np_random(seed)
        return [seed]

    def _uniform(self, lo, hi):
        return self.np_random.uniform(lo, hi, 1)[0]

    # ------------------------------------------------------------------------------------------------------
    # world construction
    def _destroy(self):
        if self.player1 is None:
            return
        self.world.contactListener = None
        # The original's order: players, puck, goals, then walls and decorations. Box2D recycles the freed
        # broad-phase proxy ids last-in first-out, so this order decides the ids (and with them the contact
        # order) of the next episode's bodies: any other order diverges from the original a few resets later.
        for body in (self.player1, self.player2, self.puck, self.goal_player_1, self.goal_player_2,
                     *self.world_objects):
            self.world.DestroyBody(body)
        self.player1 = self.player2 = self.puck = None
        self.goal_player_1 = self.goal_player_2 = None
        self.world_objects = []
        self.drawlist = []

    def _fresh_world(self):
        """New b2World brought into the state of a just-constructed env (one build/destroy cycle).

        Box2D's broad-phase reuses proxy ids in LIFO order, so with a persistent world the contact order (and,
        in multi-contact situations, the float results) depends on how many resets happened before.
        """
        self.world = Box2D.b2World(gravity=(0, 0), doSleep=True)
        self._create_world()
        self.player1 = self._create_player((W / 5, H / 2), COLOR_P1, False)
        self.player2 = self._create_player((4 * W / 5, H / 2), COLOR_P2, True)
        self.puck = self._create_puck((W / 2 - 1.5, H / 2))
        self._destroy()

    def _create_player(self, position, color, is_player_two: bool):
        sign = -1.0 if is_player_two else 1.0
        verts = [(sign * x / SCALE * RACKETFACTOR, y / SCALE * RACKETFACTOR) for x, y in RACKETPOLY]
        player = self.world.CreateDynamicBody(
            position=position,
            angle=0.0,
            fixtures=fixtureDef(
                shape=polygonShape(vertices=verts),
                density=200.0 / RACKETFACTOR,
                friction=1.0,
                categoryBits=0x0010,
                maskBits=0x011,
                restitution=0.0,
            ),
        )
        player.userData = _TAG_P2 if is_player_two else _TAG_P1
        player.color1 = color
        player.color2 = color
        return player

    def _create_puck(self, position):
        puck = self.world.CreateDynamicBody(
            position=position,
            angle=0.0,
            fixtures=fixtureDef(
                shape=circleShape(radius=13 / SCALE, pos=(0, 0)),
                density=7.0,
                friction=0.1,
                categoryBits=0x001,
                maskBits=0x0010,
                restitution=0.95,
            ),
        )
        puck.userData = _TAG_PUCK
        puck.color1 = (0, 0, 0)
        puck.color2 = (0, 0, 0)
        puck.linearDamping = 0.05
        return puck

    def _create_wall(self, position, poly_px):
        wall = self.world.CreateStaticBody(
            position=position,
            angle=0.0,
            fixtures=fixtureDef(
                shape=polygonShape(vertices=[(x / SCALE, y / SCALE) for x, y in poly_px]),
                density=0,
                friction=0.1,
                categoryBits=0x011,
                maskBits=0x0011,
            ),
        )
        wall.color1 = (0, 0, 0)
        wall.color2 = (0, 0, 0)
        return wall

    def _create_decoration(self, position, shape, color):
        body = self.world.CreateStaticBody(
            position=position,
            angle=0.0,
            fixtures=fixtureDef(shape=shape, categoryBits=0x0, maskBits=0x0),
        )
        body.color1 = color
        body.color2 = color
        return body

    def _create_goal(self, position, tag):
        verts = [(x / SCALE, y / SCALE) for x, y in [(-10, -GOAL_SIZE), (10, -GOAL_SIZE), (10, GOAL_SIZE),
                                                     (-10, GOAL_SIZE)]]
        goal = self.world.CreateStaticBody(
            position=position,
            angle=0.0,
            fixtures=[
                # sensor: overlaps the puck (goal detection)
                fixtureDef(shape=polygonShape(vertices=verts), density=0, friction=0.1,
                           categoryBits=0x0010, maskBits=0x001, isSensor=True),
                # solid: blocks the players, lets the puck through
                fixtureDef(shape=polygonShape(vertices=verts), density=0, friction=0.1,
                           categoryBits=0x010, maskBits=0x0010),
            ],
        )
        goal.userData = tag
        goal.color1 = COLOR_GOAL_AREA
        goal.color2 = COLOR_GOAL_AREA
        return goal

    def _create_world(self):
        objs = []
        # decorations (visual only, collide with nothing)
        objs.append(self._create_decoration((W / 2, H / 2), circleShape(radius=100 / SCALE, pos=(0, 0)),
                                            COLOR_CENTER))
        objs.append(self._create_decoration((W / 2 - 250 / SCALE, H / 2),
                                            circleShape(radius=GOAL_SIZE / SCALE, pos=(0, 0)), COLOR_GOAL_AREA))
        # white boxes (body at the box's inner edge, as in the original, so that the rendered float32 vertex
        # coordinates are the original's); drawn after the goal circles they cover their inner halves
        box = [(0, 100), (100, 100), (100, -100), (0, -100)]
        objs.append(self._create_decoration(
            (W / 2 - 240 / SCALE, H / 2), polygonShape(vertices=[(x / SCALE, y / SCALE) for x, y in box]),
            (255, 255, 255)))
        objs.append(self._create_decoration((W / 2 + 250 / SCALE, H / 2),
                                            circleShape(radius=GOAL_SIZE / SCALE, pos=(0, 0)), COLOR_GOAL_AREA))
        objs.append(self._create_decoration(
            (W / 2 + 140 / SCALE, H / 2), polygonShape(vertices=[((100 - x) / SCALE, y / SCALE) for x, y in box]),
            (255, 255, 255)))

        # top and bottom walls
        poly = [(-250, 10), (-250, -10), (250, -10), (250, 10)]
        objs.append(self._create_wall((W / 2, H - 0.5), poly))
        objs.append(self._create_wall((W / 2, 0.5), poly))
        # goal posts (slanted towards the goal mouth)
        top = int(round((H - 1) / 2 * SCALE - GOAL_SIZE))  # 135 px
        poly = [(-10, top), (10, top - 7), (10, -5), (-10, -5)]
        objs.append(self._create_wall((W / 2 - 245 / SCALE, 0.5), poly))
        poly = [(-10, -top), (10, -top + 7), (10, 5), (-10, 5)]
        objs.append(self._create_wall((W / 2 - 245 / SCALE, H - 0.5), poly))
        poly = [(10, top), (-10, top - 7), (-10, -5), (10, -5)]
        objs.append(self._create_wall((W / 2 + 245 / SCALE, 0.5), poly))
        poly = [(10, -top), (-10, -top + 7), (-10, 5), (10, 5)]
        objs.append(self._create_wall((W / 2 + 245 / SCALE, H - 0.5), poly))
        self.world_objects = objs
        self.drawlist = list(objs)  # in creation order, like the original

        self.goal_player_1 = self._create_goal((W / 2 - 250 / SCALE - 5 / SCALE, H / 2), _TAG_GOAL1)
        self.goal_player_2 = self._create_goal((W / 2 + 250 / SCALE + 5 / SCALE, H / 2), _TAG_GOAL2)

    # ------------------------------------------------------------------------------------------------------
    # reset
    def reset(self, one_starting=None, mode=None, seed=None, options=None):
        """Start a new episode. NOTE: the first positional argument is ``one_starting``, not ``seed``.

        ``one_starting`` (NORMAL only): True puts the puck on player one's side; None alternates sides.
        ``mode``: raises TypeError like the original unless ``fix_bugs`` contains ``"reset_mode"``.
        ``options`` is ignored.
        """
        if mode is not None:
            if "reset_mode" not in self.fixes:
                raise TypeError("attribute name must be string (original hockey bug: reset(mode=...) always "
                                "fails; set env.mode before reset(), or use HockeyEnv(fix_bugs=['reset_mode']))")
            self.mode = mode
        self._destroy()
        if "fresh_world" in self.fixes:
            self._fresh_world()
        self.seed(seed)
        self._listener = _ContactListener(self)
        self.world.contactListener = self._listener
        self.done = False
        self.winner = 0
        self.prev_shaping = None
        self.time = 0
        if "counters_reset" in self.fixes:
            self.player1_has_puck = 0
            self.player2_has_puck = 0

        if self._mode == Mode.NORMAL:
            self.max_timesteps = 250
            if one_starting is not None:
                self.one_starts = one_starting
            else:
                self.one_starts = not self.one_starts
        else:
            self.max_timesteps = 80
        self.closest_to_goal_dist = 1000
        # closeness shaping coefficient, -30 / (max_dist * T / 2)
        self._closeness_factor = -30.0 / (250.0 / SCALE * self.max_timesteps / 2)
        self._direction_factor = 1.0 / (self.max_timesteps * MAX_PUCK_SPEED)

        self._create_world()

        self.player1 = self._create_player((W / 5, H / 2), COLOR_P1, False)
        if self._mode != Mode.NORMAL:
            x = 4 * W / 5 + self._uniform(-W / 3, W / 6)
            y = H / 2 + self._uniform(-H / 4, H / 4)
            self.player2 = self._create_player((x, y), COLOR_P2, True)
        else:
            self.player2 = self._create_player((4 * W / 5, H / 2), COLOR_P2, True)

        if self._mode == Mode.NORMAL or self._mode == Mode.TRAIN_SHOOTING:
            if self.one_starts or self._mode == Mode.TRAIN_SHOOTING:
                x = W / 2 - self._uniform(H / 8, H / 4)
            else:
                x = W / 2 + self._uniform(H / 8, H / 4)
            y = H / 2 + self._uniform(-H / 8, H / 8)
            self.puck = self._create_puck((x, y))
        else:  # TRAIN_DEFENSE: puck shot towards player one's goal
            x = W / 2 + self._uniform(0, W / 3)
            y = H / 2 + 0.8 * self._uniform(-H / 2, H / 2)
            self.puck = self._create_puck((x, y))
            target = b2Vec2(0, H / 2 + 0.6 * self._uniform(-GOAL_SIZE / SCALE, GOAL_SIZE / SCALE))
            direction = self.puck.position - target
            direction = direction / direction.length
            force = -direction * SHOOTFORCEMULTIPLIER * self.puck.mass / self.timeStep
            self.puck.ApplyForceToCenter(force, True)

        self.drawlist.extend([self.player1, self.player2, self.puck])
        self._p1_mass = self.player1.mass
        self._p2_mass = self.player2.mass
        self._puck_mass = self.puck.mass

        obs = self._get_obs()
        info = self._get_info()
        return obs, info

    # ------------------------------------------------------------------------------------------------------
    # control laws (spec §3)
    def _check_boundaries(self, fx, fy, player, x, y, is_player_one):
        """Boundary rule: zero the body velocity component (and the force) when pushing outwards."""
        if is_player_one:
            out_x = (x < W / 2 - 210 / SCALE and fx < 0) or (x > W / 2 and fx > 0)
        else:
            out_x = (x > W / 2 + 210 / SCALE and fx > 0) or (x < W / 2 and fx < 0)
        if out_x:
            v = player.linearVelocity
            player.linearVelocity = (0.0, v.y)
            fx = 0.0
        if (y > H - 1.2 and fy > 0) or (y < 1.2 and fy < 0):
            v = player.linearVelocity
            player.linearVelocity = (v.x, 0.0)
            fy = 0.0
        return fx, fy

    def _apply_translation(self, player, ax, ay, is_player_one, mass):
        pos = player.position
        x, y = pos.x, pos.y
        vel = player.linearVelocity
        vx, vy = vel.x, vel.y
        if is_player_one:
            fx, fy = ax * FORCEMULTIPLIER, ay * FORCEMULTIPLIER
            in_zone = x > CENTER_X - ZONE
        else:
            fx, fy = -ax * FORCEMULTIPLIER, -ay * FORCEMULTIPLIER
            in_zone = x < CENTER_X + ZONE
        if in_zone:
            # the x-action is ignored; brake and push back out of the centre strip (float32 arithmetic)
            f = np.float32(0.0)
            if is_player_one:
                if vx > 0:
                    f = np.float32(-2 * vx * mass / DT)
                f += -1 * (x - CENTER_X) * vx * mass / DT
            else:
                if vx < 0:
                    f = np.float32(-2 * vx * mass / DT)
                f += 1 * (x - CENTER_X) * vx * mass / DT
            fx = float(f)
            player.linearDamping = 20.0
            fx, fy = self._check_boundaries(fx, fy, player, x, y, is_player_one)
            player.ApplyForceToCenter((fx, fy), True)
            return
        speed = math.sqrt(vx * vx + vy * vy)
        if speed < MAX_PLAYER_SPEED:
            player.linearDamping = 5.0
            fx, fy = self._check_boundaries(fx, fy, player, x, y, is_player_one)
            player.ApplyForceToCenter((fx, fy), True)
        else:
            player.linearDamping = 20.0
            # dt * F / m in float32 (like the numpy float32 force array of the original)
            dvx = float(np.float32(DT) * np.float32(fx) / np.float32(mass))
            dvy = float(np.float32(DT) * np.float32(fy) / np.float32(mass))
            nvx, nvy = vx + dvx, vy + dvy
            if math.sqrt(nvx * nvx + nvy * nvy) < speed:
                fx, fy = self._check_boundaries(fx, fy, player, x, y, is_player_one)
                player.ApplyForceToCenter((fx, fy), True)

    def _apply_rotation(self, player, a_rot, mass):
        angle = player.angle
        if abs(angle) > MAX_ANGLE:
            omega = player.angularVelocity
            torque = 0.0
            if angle * omega > 0:
                torque = -0.1 * omega * mass / DT
            torque += -0.1 * angle * mass / DT
            player.angularDamping = 10.0
        else:
            torque = a_rot * TORQUEMULTIPLIER
            player.angularDamping = 2.0
        player.ApplyTorque(torque, True)

    def _limit_puck_speed(self):
        v = self.puck.linearVelocity
        if math.sqrt(v.x * v.x + v.y * v.y) > MAX_PUCK_SPEED:
            self.puck.linearDamping = 10.0
        else:
            self.puck.linearDamping = 0.05

    def _keep_puck(self, player):
        self.puck.position = player.position
        self.puck.linearVelocity = player.linearVelocity

    def _shoot(self, player, is_player_one):
        angle = player.angle
        sign = 1.0 if is_player_one else -1.0
        direction = b2Vec2(sign * math.cos(angle), sign * math.sin(angle))
        force = direction * self._puck_mass / self.timeStep * SHOOTFORCEMULTIPLIER
        self.puck.ApplyForceToCenter(force, True)

    # ------------------------------------------------------------------------------------------------------
    # step
    def step(self, action):
        a = np.clip(action, -1, +1).astype(np.float32).tolist()
        k = 4 if self.keep_mode else 3
        self._apply_translation(self.player1, a[0], a[1], True, self._p1_mass)
        self._apply_rotation(self.player1, a[2], self._p1_mass)
        self._apply_translation(self.player2, a[k], a[k + 1], False, self._p2_mass)
        self._apply_rotation(self.player2, a[k + 2], self._p2_mass)
        self._limit_puck_speed()
        if self.keep_mode:
            if self.player1_has_puck > 1:
                self._keep_puck(self.player1)
                self.player1_has_puck -= 1
                if self.player1_has_puck == 1 or a[3] > 0.5:
                    self._shoot(self.player1, True)
                    self.player1_has_puck = 0
            if self.player2_has_puck > 1:
                self._keep_puck(self.player2)
                self.player2_has_puck -= 1
                if self.player2_has_puck == 1 or a[7] > 0.5:
                    self._shoot(self.player2, False)
                    self.player2_has_puck = 0

        self.world.Step(self.timeStep, VELOCITY_ITERATIONS, POSITION_ITERATIONS)

        obs = self._get_obs()
        timeout = False
        if self.time >= self.max_timesteps:
            if "truncation" in self.fixes and not self.done:
                timeout = True
            self.done = True
        info = self._get_info()
        reward = self.get_reward(info)
        self.time += 1
        if timeout:
            return obs, reward, False, True, info
        return obs, reward, self.done, False, info

    # ------------------------------------------------------------------------------------------------------
    # observations
    def _raw_state(self):
        p1, p2, puck = self.player1, self.player2, self.puck
        q1, v1 = p1.position, p1.linearVelocity
        q2, v2 = p2.position, p2.linearVelocity
        qp, vp = puck.position, puck.linearVelocity
        return [q1.x, q1.y, p1.angle, v1.x, v1.y, p1.angularVelocity,
                q2.x, q2.y, p2.angle, v2.x, v2.y, p2.angularVelocity,
                qp.x, qp.y, vp.x, vp.y, self.player1_has_puck, self.player2_has_puck]

    def _obs18(self) -> np.ndarray:
        # Box2D state is float32; subtracting the centre in float32 reproduces the original's b2Vec2 arithmetic
        return (np.array(self._raw_state(), dtype=np.float32) - _OBS_OFFSET).astype(np.float64)

    def _get_obs(self) -> np.ndarray:
        obs = self._obs18()
        if not self.keep_mode:
            obs = obs[:16]
        if self._obs_dtype is np.float32:
            obs = obs.astype(np.float32)
        return obs

    def obs_agent_two(self) -> np.ndarray:
        """Player two's observation: the state rotated by 180 degrees about the centre, counters swapped."""
        obs = self._obs18()[_PERM2] * _SIGN2
        if not self.keep_mode:
            obs = obs[:16]
        if self._obs_dtype is np.float32:
            obs = obs.astype(np.float32)
        return obs

    def set_state(self, state):
        """Write poses, velocities (and counters with keep_mode) from an observation vector (player-one view).

        Puck spin, damping, time and done are not restored (as in the original).
        """
        s = [float(v) for v in state]
        self.player1.position = (s[0] + CENTER_X, s[1] + CENTER_Y)
        self.player1.angle = s[2]
        self.player1.linearVelocity = (s[3], s[4])
        self.player1.angularVelocity = s[5]
        self.player2.position = (s[6] + CENTER_X, s[7] + CENTER_Y)
        self.player2.angle = s[8]
        self.player2.linearVelocity = (s[9], s[10])
        self.player2.angularVelocity = s[11]
        self.puck.position = (s[12] + CENTER_X, s[13] + CENTER_Y)
        self.puck.linearVelocity = (s[14], s[15])
        if self.keep_mode:
            self.player1_has_puck = int(s[16])
            self.player2_has_puck = int(s[17])

    # ------------------------------------------------------------------------------------------------------
    # reward / info (spec §7)
    def _compute_reward(self) -> float:
        r = 0.0
        if self.done:
            if self.winner == 0:
                r += 0.0
            elif self.winner == 1:
                r += 10.0
            else:
                r -= 10.0
        return r

    def _closeness(self, player, puck_x, puck_vx, is_player_one) -> float:
        d = player.position - self.puck.position  # float32 difference (b2Vec2), then float64 norm
        dx, dy = d.x, d.y
        if is_player_one:
            active = puck_x < CENTER_X and puck_vx <= 0
        else:
            active = puck_x > CENTER_X and puck_vx >= 0
        if not active:
            return 0.0
        return math.sqrt(dx * dx + dy * dy) * self._closeness_factor

    def _get_info(self) -> dict:
        px = self.puck.position.x
        vpx = self.puck.linearVelocity.x
        return {
            "winner": self.winner,
            "reward_closeness_to_puck": float(self._closeness(self.player1, px, vpx, True)),
            "reward_touch_puck": 1.0 if self.player1_has_puck == MAX_TIME_KEEP_PUCK else 0.0,
            "reward_puck_direction": float(vpx * self._direction_factor),
        }

    def get_info_agent_two(self) -> dict:
        px = self.puck.position.x
        vpx = self.puck.linearVelocity.x
        return {
            "winner": -self.winner,
            "reward_closeness_to_puck": float(self._closeness(self.player2, px, vpx, False)),
            "reward_touch_puck": 1.0 if self.player2_has_puck == MAX_TIME_KEEP_PUCK else 0.0,
            "reward_puck_direction": float(-vpx * self._direction_factor),
        }

    def get_reward(self, info) -> float:
        return float(self._compute_reward() + info["reward_closeness_to_puck"])

    def get_reward_agent_two(self, info_two) -> float:
        return float(-self._compute_reward() + info_two["reward_closeness_to_puck"])

    # ------------------------------------------------------------------------------------------------------
    # misc API
    def discrete_to_continous_action(self, discrete_action):
        """0 none, 1/2 -x/+x, 3/4 -y/+y, 5/6 -torque/+torque, 7 shoot (keep_mode only). Returns a list."""
        a = discrete_action
        action_cont = [
            (a == 1) * -1.0 + (a == 2) * 1.0,
            (a == 3) * -1.0 + (a == 4) * 1.0,
            (a == 5) * -1.0 + (a == 6) * 1.0,
        ]
        if self.keep_mode:
            action_cont.append((a == 7) * 1.0)
        return action_cont

    # ------------------------------------------------------------------------------------------------------
    # rendering (pygame, imported lazily)
    def render(self, mode=None):
        mode = mode if mode is not None else self.render_mode
        if mode is None:
            warnings.warn("render() called without a render mode; pass mode='human' or 'rgb_array' "
                          "(or render_mode=... to the constructor)")
            return None
        if mode not in ("human", "rgb_array"):
            raise ValueError(f"unsupported render mode {mode!r}")
        try:
            import pygame
        except ImportError as e:  # pragma: no cover
            raise gym.error.DependencyNotInstalled("pygame is needed for rendering: pip install pygame") from e

        if self.screen is None and mode == "human":
            pygame.init()
            pygame.display.init()
            self.screen = pygame.display.set_mode((VIEWPORT_W, VIEWPORT_H))
        if self.clock is None:
            self.clock = pygame.time.Clock()

        surf = pygame.Surface((VIEWPORT_W, VIEWPORT_H))
        surf.fill((255, 255, 255))
        # The original's drawing, pixel for pixel: every shape filled, then a 2-px outline of the same colour
        # (pygame.draw, no anti-aliasing), at float pixel coordinates (b2Vec2 arithmetic, float32).
        for body in self.drawlist:
            for fixture in body.fixtures:
                trans = body.transform
                shape = fixture.shape
                if isinstance(shape, circleShape):
                    center = trans * shape.pos * SCALE
                    radius = shape.radius * SCALE
                    pygame.draw.circle(surf, body.color1, center, radius, width=0)
                    pygame.draw.circle(surf, body.color2, center, radius, width=2)
                else:
                    path = [trans * v * SCALE for v in shape.vertices]
                    pygame.draw.polygon(surf, body.color1, path, width=0)
                    pygame.draw.polygon(surf, body.color2, path + path[:1], width=2)  # outline repeats vertex 0
        surf = pygame.transform.flip(surf, False, True)  # Box2D y points up
        self.surf = surf

        if mode == "human":
            pygame.event.pump()
            self.screen.blit(surf, (0, 0))
            self.clock.tick(self.metadata["render_fps"])
            pygame.display.flip()
            return None
        return np.ascontiguousarray(np.transpose(np.array(pygame.surfarray.pixels3d(surf)), (1, 0, 2)),
                                    dtype=np.uint8)

    def close(self):
        if self.screen is not None:
            import pygame

            pygame.display.quit()
            pygame.quit()
            self.isopen = False
            self.screen = None


class HockeyEnv_BasicOpponent(HockeyEnv):
    """Single-player variant: the learner is player one; a ``BasicOpponent`` (strong by default) plays two.

    The opponent persists across resets (its random phase keeps drifting).
    """

    def __init__(self, mode=Mode.NORMAL, weak_opponent: bool = False, **kwargs):
        super().__init__(mode=mode, keep_mode=True, **kwargs)
        self.opponent = BasicOpponent(weak=weak_opponent)
        self.action_space = spaces.Box(-1, +1, (4,), dtype=np.float32)

    def step(self, action):
        ob2 = self.obs_agent_two()
        a2 = self.opponent.act(ob2)
        return super().step(np.concatenate([np.asarray(action, dtype=np.float64).reshape(-1), a2]))
