"""The hockey tasks' training hooks (envs/hooks.py): auxiliary targets, game results, the self-play pool."""
import contextlib
from collections import deque
from pathlib import Path

from tqdm import tqdm

from common import checkpoint
from envs.hockey.aux_targets import aux_targets
from envs.hooks import TaskHooks

RECENT_GAMES = 100  # win/draw/loss rates in train.csv are over this many last games


class HockeyHooks(TaskHooks):
    """`pool`: the self-play OpponentPool the env plays (hockey.opponent=selfplay), else None. `drills`: the
    env's Drills (hockey.drills), else None."""

    def __init__(self, cfg, spec, pool=None, drills=None):
        self.cfg, self.spec, self.pool, self.drills = cfg, spec, pool, drills
        self.outcomes = deque(maxlen=RECENT_GAMES)  # per-game results: 1 win, 0 draw, -1 loss
        self.drill_outcomes = {"shooting": deque(maxlen=RECENT_GAMES), "defense": deque(maxlen=RECENT_GAMES)}
        self.next_snapshot = 0

    def annotate(self, episode, final_info: dict) -> None:
        """aux_heads: the per-step auxiliary targets, computed once per episode as it enters replay."""
        if self.cfg.aux_heads.enabled:
            episode.update(aux_targets(episode["obs"], final_info, self.cfg.aux_heads.goal_horizon))

    def episode_stats(self, final_info: dict) -> dict:
        """Win/draw/loss rates over the last full games, the goals, and the self-play pool's statistics; after a
        drill, its kind's goal rate over the last drills of that kind (`drill_win_rate/shooting`: shots that
        scored, `drill_loss_rate/defense`: shots conceded) and nothing of the full games' counts."""
        if "winner" not in final_info:
            return {}
        drill = final_info.get("mode", "normal")
        if drill != "normal":
            games = self.drill_outcomes[drill]
            games.append(int(final_info["winner"]))
            return {f"drill_win_rate/{drill}": sum(o == 1 for o in games) / len(games),
                    f"drill_loss_rate/{drill}": sum(o == -1 for o in games) / len(games)}
        self.outcomes.append(int(final_info["winner"]))
        n = len(self.outcomes)
        stats = {"win_rate": sum(o == 1 for o in self.outcomes) / n,
                 "draw_rate": sum(o == 0 for o in self.outcomes) / n,
                 "loss_rate": sum(o == -1 for o in self.outcomes) / n}
        for key in ("goals_for", "goals_against"):
            if key in final_info:
                stats[key] = final_info[key]
        if self.pool is not None:  # the game's opponent: per-opponent win rates, PFSP scores
            self.pool.record(int(final_info["winner"]))
            stats.update(self.pool.stats())
        return stats

    @contextlib.contextmanager
    def evaluating(self):
        """Full games only, and self-play evaluates against the task's own BasicOpponent, as runs without a
        pool do."""
        with contextlib.ExitStack() as stack:
            for schedule in (self.pool, self.drills):
                if schedule is not None:
                    stack.enter_context(schedule.evaluating())
            yield

    @staticmethod
    def evaluation_matchups() -> dict[str, dict]:
        """evaluate.py: both BasicOpponents, sides alternating game by game."""
        return {opponent: {"hockey": {"opponent": opponent, "side": "alternate"}} for opponent in ("weak", "strong")}

    def before_episode(self, step: int, agent, counters: dict, run_dir: Path) -> None:
        """Self-play: every `selfplay.snapshot_every` steps (the first at step 0, so the pool is never empty)
        the learner's policy goes to `selfplay/step_<N>.pt` and joins the opponent pool."""
        every = self.cfg.selfplay.snapshot_every
        if self.pool is None or every == 0 or step < self.next_snapshot:
            return
        path = Path(run_dir) / "selfplay" / f"step_{step}.pt"
        checkpoint.save(path, self.cfg, self.spec, agent, counters, policy_only=True)
        dropped = self.pool.add(path, step)
        self.next_snapshot = (step // every + 1) * every  # snapshots come at episode ends: the next multiple
        tqdm.write(f"Self-play snapshot {path.name}: pool of {len(self.pool.members)}"
                   + "".join(f", dropped {Path(m.path).name}" for m in dropped))

    def state_dict(self) -> dict:
        return {"outcomes": list(self.outcomes), "next_snapshot": self.next_snapshot,
                "drill_outcomes": {kind: list(games) for kind, games in self.drill_outcomes.items()},
                "selfplay": self.pool.state_dict() if self.pool is not None else None}

    def load_state_dict(self, trainer_state: dict) -> None:
        self.outcomes.extend(trainer_state["outcomes"])
        for kind, games in trainer_state.get("drill_outcomes", {}).items():  # absent before hockey.drills existed
            self.drill_outcomes[kind].extend(games)
        self.next_snapshot = trainer_state["next_snapshot"]
        if self.pool is not None and trainer_state["selfplay"] is not None:
            self.pool.load_state_dict(trainer_state["selfplay"])

    @staticmethod
    def migrate(trainer_state: dict, version: int) -> None:
        """Version 2 -> 3: files of earlier code may lack the game outcomes (none counted), the next snapshot's
        step (one at once), the pool and its BasicOpponents' state (theirs start afresh)."""
        if version != 2:
            return
        trainer_state.setdefault("outcomes", [])
        trainer_state.setdefault("next_snapshot", trainer_state["step"])
        trainer_state.setdefault("selfplay", None)
        if trainer_state["selfplay"] is not None:
            trainer_state["selfplay"].setdefault("basic", {})
