"""Concrete agents shipped with Interplay."""

from agents.llm import LLMAgent, RecommenderSimulator, UserSimulator
from agents.rule_based import RuleBasedRecommender, RuleBasedUser

__all__ = ["LLMAgent", "RecommenderSimulator", "RuleBasedRecommender", "RuleBasedUser", "UserSimulator"]
