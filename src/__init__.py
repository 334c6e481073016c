"""Agents and their world models. `make_agent(cfg, spec, device)` builds the one named by `cfg.agent`; each
agent is one folder and one `register_agent` line here (src/base.py: the contract and the registry), each
head group's config rules one `register_rules` line."""
from common.checkpoint import register_converter
from common.config import register_rules
from src.base import AGENTS, Agent, make_agent, register_agent
from src.dreamer import rules as dreamer_rules
from src.dreamer.agent import Dreamer
from src.heads import aux_task, multi_gamma
from src.tdmpc2 import official, rules as tdmpc2_rules
from src.tdmpc2.agent import TDMPC2
from src.worldmodels import rules as worldmodels_rules
from src.worldmodels.agent import WorldModels

__all__ = ["AGENTS", "Agent", "make_agent", "register_agent"]

register_rules(multi_gamma.config_rules, multi_gamma.env_rules)
register_rules(aux_task.config_rules)
register_converter("official TD-MPC2", official.is_official, official.convert)

register_agent("tdmpc2", TDMPC2, tdmpc2_rules.RULES)
register_agent("dreamer", Dreamer, dreamer_rules.RULES)
register_agent("worldmodels", WorldModels, worldmodels_rules.RULES)
