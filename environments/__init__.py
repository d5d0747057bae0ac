"""Environments that run episodes between a user agent and a recommender agent."""

from environments.recommendation_env import AgentHandle, EnvConfig, LocalAgentHandle, RecommendationEnv

__all__ = ["AgentHandle", "EnvConfig", "LocalAgentHandle", "RecommendationEnv"]
