"""The shipped hockey agents (pretrained/hockey/): each is a small policy-only file that plays from a fresh
clone, evaluate.py reads it, and the README table there names it."""
import json
from pathlib import Path

import numpy as np
import pytest

from envs.hockey.selfplay import checkpoint_policy
from envs.hockey.task import make_hockey_env
from tests.conftest import ROOT
from tests.test_evaluate import _evaluate

FOLDER = ROOT / "pretrained" / "hockey"
SHIPPED = sorted(FOLDER.glob("*.pt"))
MAX_MB = 8  # "a few MB each": policy-only, no optimiser state or buffer


def test_agents_are_shipped_and_listed():
    assert SHIPPED, f"no checkpoints in {FOLDER}"
    table = (FOLDER / "README.md").read_text()
    for path in SHIPPED:
        assert f"`{path.name}`" in table, f"{path.name} is missing from {FOLDER / 'README.md'}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_agent_is_small_and_plays_deterministically(path: Path):
    import torch
    assert path.stat().st_size < MAX_MB * 2**20
    assert torch.load(path, map_location="cpu", weights_only=False)["policy_only"]
    env = make_hockey_env(opponent="weak", seed=0)
    obs, _ = env.reset()
    policy = checkpoint_policy(path)
    actions = []
    for _ in range(2):  # the same observations twice, from a reset policy: the same actions
        policy.reset()
        actions.append(np.stack([policy(obs) for _ in range(3)]))
    assert actions[0].shape == (3, 4) and np.all(np.abs(actions[0]) <= 1)
    np.testing.assert_array_equal(actions[0], actions[1])


def test_evaluate_reads_a_shipped_agent(tmp_path):
    ev = _evaluate([f"checkpoint={SHIPPED[0]}", "hockey_games=2", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((tmp_path / "evaluation.json").read_text())
    for opponent in ("weak", "strong"):
        assert sum(result[opponent][k]["rate"] for k in ("win", "draw", "loss")) == pytest.approx(1)
