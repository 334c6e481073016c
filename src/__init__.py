"""Agents and their world models. `make_agent(cfg, spec, device)` builds the one named by `cfg.agent`; each
agent is one folder and one `register_agent` line here (src/base.py: the contract and the registry)."""
from src.base import AGENTS, Agent, make_agent, register_agent
from src.dreamer import rules as dreamer_rules
from src.dreamer.agent import Dreamer
from src.tdmpc2 import rules as tdmpc2_rules
from src.tdmpc2.agent import TDMPC2
from src.worldmodels import rules as worldmodels_rules
from src.worldmodels.agent import WorldModels

__all__ = ["AGENTS", "Agent", "make_agent", "register_agent"]

register_agent("tdmpc2", TDMPC2, tdmpc2_rules.RULES)
register_agent("dreamer", Dreamer, dreamer_rules.RULES)
register_agent("worldmodels", WorldModels, worldmodels_rules.RULES)
