"""Interplay: conversational recommendation simulated by independent LLM agents.

Importing the package registers the built-in agent kinds (:mod:`interplay.agent_kinds`); installed
plug-ins add theirs through entry points (:mod:`interplay.plugins`)."""

from interplay import agent_kinds as _agent_kinds  # noqa: F401 (registers the built-in kinds)
