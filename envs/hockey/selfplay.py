"""Self-play opponents for the hockey task: the weak and strong BasicOpponents mixed with a bounded pool of
frozen agents (snapshots of the learner, or checkpoints of either agent type).

An :class:`OpponentPool` is the :class:`~envs.hockey.task.HockeyTask`'s ``opponent_policy``: the task calls
``reset()`` at the start of each episode, which draws the episode's opponent, and then calls the pool with the
opponent's observation. Whoever runs the games reports each finished training game with ``record(winner)``
(the online trainer does; the agent knows nothing of the pool), and ``evaluating()`` pins the opponent to the
evaluation opponent without recording anything.

Choosing the opponent
---------------------
``probs = {weak, strong, pool}`` picks the kind; while the pool is empty its share goes to the BasicOpponents
in proportion to theirs. Within the pool, members are drawn uniformly, or with ``pfsp=True`` by prioritised
fictitious self-play (AlphaStar's "hard" weighting): member ``i`` gets weight
``max((1 - s_i) ** PFSP_POWER, PFSP_FLOOR)``, where ``s_i`` is the learner's score against it over the last
``RECENT_GAMES`` games against that member (win 1, draw 1/2, loss 0) with one pseudo-win and one pseudo-loss, so
an unplayed member scores 1/2. The learner is thus sent more often to opponents it loses to; the floor keeps
every member in play (a member beaten every time still gets ``PFSP_FLOOR / 0.25`` = 1/5 of an unplayed one's
weight).

Bounding the pool
-----------------
``add(path, step)`` loads a member; beyond ``pool_size`` members one leaves: ``drop="oldest"`` the earliest
added, ``drop="weakest"`` the member with the highest learner score (earliest on ties), never the member just
added (it has no games yet). Files stay on disk; the pool only forgets them.

Members act deterministically from their own perspective (``src.policy.CheckpointPolicy``, ``eval_mode``);
all members stay loaded, so ``pool_size`` bounds memory too.
"""
from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from src.policy import CheckpointPolicy
from .opponents import BasicOpponent

__all__ = ["OpponentPool", "checkpoint_policy", "learner_score", "pfsp_weight"]

KINDS = ("weak", "strong", "pool")
RECENT_GAMES = 100  # games per opponent (and per kind) that the scores and logged win rates look back over
PFSP_POWER = 2.0
PFSP_FLOOR = 0.05


def learner_score(outcomes) -> float:
    """The learner's score from its outcomes (+1 win, 0 draw, -1 loss): draws count half, plus one pseudo-win
    and one pseudo-loss, so no games score 1/2 and the score never reaches 0 or 1."""
    wins = sum(o == 1 for o in outcomes)
    draws = sum(o == 0 for o in outcomes)
    return (wins + 0.5 * draws + 1) / (len(outcomes) + 2)


def pfsp_weight(score: float) -> float:
    """Unnormalised PFSP sampling weight of a member the learner scores `score` against."""
    return max((1.0 - score) ** PFSP_POWER, PFSP_FLOOR)


def checkpoint_policy(path: str | Path, device: str = "cpu"):
    """A hockey checkpoint (either agent type) as a frozen, deterministic policy; ValueError if it was not
    trained on hockey's 18-dim observations and 4 actions."""
    policy = CheckpointPolicy(path, device)
    if tuple(policy.spec.obs_shape) != (18,) or policy.spec.action_dim != 4:
        raise ValueError(f"{path}: a {policy.spec.task} checkpoint ({policy.spec.obs_shape} obs, "
                         f"{policy.spec.action_dim} actions) cannot play hockey (18 obs, 4 actions)")
    return policy


@dataclass
class Member:
    path: str
    step: int | None  # the learner's step for snapshots; None for checkpoints given at the start
    policy: Callable
    outcomes: deque = field(default_factory=lambda: deque(maxlen=RECENT_GAMES))


class OpponentPool:
    """The opponent of each hockey episode: weak, strong or a pool member; see the module docstring."""

    def __init__(self, probs: dict, pool_size: int, drop: str = "oldest", pfsp: bool = False,
                 seed: int | None = None, eval_opponent: str = "weak",
                 load_policy: Callable = checkpoint_policy):
        if drop not in ("oldest", "weakest"):
            raise ValueError(f"drop must be 'oldest' or 'weakest', not {drop!r}")
        if eval_opponent not in ("weak", "strong"):
            raise ValueError(f"eval_opponent must be 'weak' or 'strong', not {eval_opponent!r}")
        self.probs = {kind: float(probs[kind]) for kind in KINDS}
        self.pool_size, self.drop, self.pfsp = int(pool_size), drop, bool(pfsp)
        self.eval_opponent = eval_opponent
        self.load_policy = load_policy
        self.rng = np.random.default_rng(seed)
        self.basic = {kind: BasicOpponent(weak=kind == "weak", rng=np.random.RandomState(self.rng.integers(2**31)))
                      for kind in ("weak", "strong")}
        self.members: list[Member] = []
        self.recent = {kind: deque(maxlen=RECENT_GAMES) for kind in KINDS}  # outcomes per kind, for logging
        self.current: str | Member | None = None  # this episode's opponent
        self._evaluating = False

    @classmethod
    def from_config(cls, sp, seed: int, eval_opponent: str, device: str = "cpu") -> "OpponentPool":
        """The pool of the `selfplay.*` config namespace, holding the checkpoints of `selfplay.pool`."""
        pool = cls(dict(sp.probs), sp.pool_size, sp.drop, sp.pfsp, seed, eval_opponent,
                   load_policy=lambda path: checkpoint_policy(path, device))
        for path in sp.pool:
            pool.add(path)
        return pool

    # ------------------------------------------------------------------ members
    def add(self, path: str | Path, step: int | None = None) -> list[Member]:
        """Load the checkpoint at `path` into the pool; returns the members dropped to keep it bounded."""
        path = str(Path(path).resolve())
        self.members.append(Member(path, step, self.load_policy(path)))
        dropped = []
        while len(self.members) > self.pool_size:
            if self.drop == "oldest":
                index = 0
            else:  # the learner's best score among the older members (max keeps the earliest on ties)
                index = max(range(len(self.members) - 1), key=lambda i: learner_score(self.members[i].outcomes))
            dropped.append(self.members.pop(index))
        return dropped

    def member_probs(self) -> np.ndarray:
        """Probability of each member (members,) given that the pool plays."""
        if self.pfsp:
            weights = np.array([pfsp_weight(learner_score(m.outcomes)) for m in self.members])
        else:
            weights = np.ones(len(self.members))
        return weights / weights.sum()

    # ------------------------------------------------------------------ playing
    def sample(self) -> str | Member:
        """Draw an opponent: 'weak', 'strong' or a member."""
        p = np.array([self.probs[kind] for kind in KINDS]) * [1, 1, bool(self.members)]  # empty pool: no share
        if p.sum() == 0:
            raise RuntimeError("the opponent pool is empty and probs.weak = probs.strong = 0: nobody to play")
        kind = KINDS[self.rng.choice(len(KINDS), p=p / p.sum())]
        if kind != "pool":
            return kind
        return self.members[self.rng.choice(len(self.members), p=self.member_probs())]

    def reset(self) -> None:
        """Start of an episode (called by the task): choose its opponent."""
        self.current = self.eval_opponent if self._evaluating else self.sample()
        if isinstance(self.current, Member) and hasattr(self.current.policy, "reset"):
            self.current.policy.reset()

    def __call__(self, obs) -> np.ndarray:
        if isinstance(self.current, Member):
            return self.current.policy(obs)
        return self.basic[self.current].act(obs)

    def record(self, winner: int) -> None:
        """The finished training game's outcome from the learner's perspective (+1 won, 0 draw, -1 lost)."""
        if self.current is None or self._evaluating:
            raise RuntimeError("record() needs a training game: call reset() first, outside evaluating()")
        if isinstance(self.current, Member):
            self.current.outcomes.append(int(winner))
            self.recent["pool"].append(int(winner))
        else:
            self.recent[self.current].append(int(winner))
        self.current = None  # each game is recorded once

    @contextlib.contextmanager
    def evaluating(self):
        """Within this block every episode is played against `eval_opponent` (and nothing is recorded)."""
        self._evaluating = True
        try:
            yield self
        finally:
            self._evaluating = False
            self.current = None

    def stats(self) -> dict:
        """Learner win rate over the last RECENT_GAMES games against each kind that has played, and pool size."""
        rates = {f"win_rate/{kind}": sum(o == 1 for o in games) / len(games)
                 for kind, games in self.recent.items() if games}
        return {**rates, "pool_size": len(self.members)}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"members": [{"path": m.path, "step": m.step, "outcomes": list(m.outcomes)} for m in self.members],
                "recent": {kind: list(games) for kind, games in self.recent.items()},
                "rng": self.rng.bit_generator.state,
                "basic": {kind: {"rng": o.rng.get_state(), "phase": o.phase} for kind, o in self.basic.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Reload the members from their files (the pool's own checkpoints are not needed)."""
        self.members = []
        for saved in state["members"]:
            member = Member(saved["path"], saved["step"], self.load_policy(saved["path"]))
            member.outcomes.extend(saved["outcomes"])
            self.members.append(member)
        for kind, games in state["recent"].items():
            self.recent[kind].clear()
            self.recent[kind].extend(games)
        self.rng.bit_generator.state = state["rng"]
        for kind, saved in state["basic"].items():
            self.basic[kind].rng.set_state(saved["rng"])
            self.basic[kind].phase = saved["phase"]
        self.current = None
