"""LLM-backed simulators: prompt a causal LM through a backend, parse with the protocol."""

from __future__ import annotations

from interplay.agent import Agent
from interplay.backends.base import GenerationBackend, GenerationParams, TurnConstraint, capabilities_of
from interplay.catalogue import Catalogue
from interplay.episode import Observation
from interplay.candidates import strip_candidates
from interplay.grounding import strip_grounding
from interplay.prompting import build_messages, render_prompt
from interplay.protocol import ACTION_OPEN, TITLE_CLOSE, TITLE_OPEN, Action, ProtocolError, Role, Turn, format_turn, parse_turn
from interplay.turn_grammar import GrammarError, check_actions


class LLMAgent(Agent):
    """Shared logic of the LLM users and recommenders.

    ``backend`` generates (in-process, or a Ray model server shared by many episodes);
    ``tokenizer`` renders the prompt. The prompt ends with ``<action>`` so the model starts its
    turn in the protocol; the raw output logged is that prefix plus the completion. Retries after
    a malformed output sample at ``retry_temperature`` even under greedy decoding, so they can differ.

    ``accept_threshold`` (users; a checkpoint's calibrated threshold, :mod:`interplay.decision_calibration`):
    at a turn answering a recommendation the decision is read, not sampled: ``accept`` when
    P(accept) from :meth:`action_probabilities` is at least the threshold, else the likeliest other
    action; the reply is then generated under that action (``turn.meta["p_accept"]`` records it).
    It needs a backend that scores and constrains (the in-process transformers backend).

    With ``params.decoding == "constrained"`` (the default) and a backend that accepts
    constraints, every request carries the turn's :class:`TurnConstraint`, so the model can only
    produce a legal turn (each turn's ``meta["decoding"]`` says how it was decoded). With
    ``params.titles == "candidates"`` a recommender shown candidates may name only them
    (:meth:`candidate_titles`), and its ranking puts them first; with ``params.titles == "new"``
    a recommender names no title already named in the episode (:meth:`named_titles`).
    """

    def __init__(self, backend: GenerationBackend, tokenizer, params: GenerationParams | None = None,
                 catalogue: Catalogue | None = None, seed: int = 0, retry_temperature: float = 0.7,
                 prefill: str = ACTION_OPEN, accept_threshold: float | None = None):
        super().__init__(catalogue, seed)
        self.backend = backend
        self.tokenizer = tokenizer
        self.params = params or GenerationParams()
        self.retry_temperature = retry_temperature
        self.prefill = prefill
        self._registered = False
        self.accept_threshold = accept_threshold
        if accept_threshold is not None:
            caps = capabilities_of(backend)
            if self.role is not Role.USER:
                raise ValueError("accept_threshold is a user's decision rule; a recommender does not accept")
            if not (caps.scoring and caps.constraints) or caps.chat:
                raise ValueError(f"accept_threshold {accept_threshold} needs a backend that scores and constrains "
                                 f"(transformers); {type(backend).__name__} does not")
            if not 0.0 <= accept_threshold <= 1.0:
                raise ValueError(f"accept_threshold {accept_threshold} is not a probability")
            if not self.constrains:
                raise ValueError(f"accept_threshold {accept_threshold} needs constrained decoding (--decoding "
                                 "constrained) to write the reply under the decided action")

    def prompt(self, observation: Observation) -> str:
        """The full prompt for this observation (shown to the model verbatim)."""
        return render_prompt(self.tokenizer, self.messages(observation), self.prefill)

    def _params(self, observation: Observation) -> GenerationParams:
        """This turn's settings: the agent's, with the turn's own seed and (for the n-gram bans)
        the partner's last turn and the agent's own earlier turns."""
        seed = (self.seed * 1_000_003 + observation.turn_index * 101 + observation.attempt) % (2**31)
        temperature = self.params.temperature
        if observation.attempt > 0 and temperature == 0:
            temperature = self.retry_temperature
        update: dict = {"seed": seed, "temperature": temperature}
        last = observation.last
        if self.params.partner_no_repeat_ngram > 0 and last is not None and last.role is not self.role:
            update["partner_turn"] = last.text
        if self.params.own_no_repeat_ngram > 0:
            update["own_turns"] = tuple(t.text for t in observation.history if t.role is self.role and t.text)
        return self.params.model_copy(update=update)

    @property
    def constrains(self) -> bool:
        """Whether this agent's turns are generated under the turn grammar: constrained
        decoding asked for and a backend that applies it."""
        return self.params.decoding == "constrained" and capabilities_of(self.backend).constraints

    def constraint(self, observation: Observation) -> TurnConstraint:
        """The legal turns of this observation: the role's legal actions (narrowed by
        ``observation.allowed_actions``), titles from the agent's catalogue, after the prefill.
        Raises :class:`~interplay.turn_grammar.GrammarError` when no legal turn exists."""
        # no catalogue at all: titles are free text; a catalogue (even an empty one): its titles only
        titled = self.catalogue is None or len(self.catalogue) > 0
        if observation.allowed_actions is not None:  # the caller's narrowing: actions of this role?
            check_actions(self.role, observation.allowed_actions, titled)
        actions = observation.legal_actions(self.role)
        if not actions:
            raise GrammarError(f"none of {sorted(a.value for a in observation.allowed_actions or ())} is legal at "
                               "this turn (accept needs an earlier recommendation)")
        check_actions(self.role, actions, titled)
        narrowed = self.candidate_titles(observation)
        return TurnConstraint(actions=tuple(sorted(actions, key=lambda a: a.value)), role=self.role,
                              catalogue=self.catalogue.key if self.catalogue is not None else None,
                              prefill=self.prefill, titles=tuple(narrowed) if narrowed else None,
                              exclude=self.named_titles(observation))

    def named_titles(self, observation: Observation) -> tuple[str, ...]:
        """The titles a recommender may not name again when ``params.titles == "new"``: every
        catalogue title already named in the episode, by either side, in the catalogue's spelling
        (empty for a user, and otherwise)."""
        if self.params.titles != "new" or self.role is not Role.RECOMMENDER or self.catalogue is None:
            return ()
        found = [it.title for h in observation.history for t in h.titles
                 if (it := self.catalogue.resolve(t)) is not None]
        return tuple(sorted(set(found)))

    def candidate_titles(self, observation: Observation) -> list[str] | None:
        """The titles this turn may name when ``params.titles == "candidates"``: the catalogue's
        own spelling of the candidates shown (None: any catalogue title; also when none are shown)."""
        if self.params.titles != "candidates" or not observation.candidates or self.catalogue is None:
            return None
        found = [it.title for t in observation.candidates if (it := self.catalogue.resolve(t)) is not None]
        return list(dict.fromkeys(found)) or None

    def decoding_mode(self) -> str:
        """How this agent's last turns were decoded: ``constrained``, ``free``, or ``parse-after``
        (constrained asked for, but the backend could not apply the grammar)."""
        if self.params.decoding == "free":
            return "free"
        if not self.constrains or getattr(self.backend, "grammar_supported", True) is not True:
            return "parse-after"  # (an HTTP server not yet seen to apply a grammar counts as not applying it)
        return "constrained"

    def _register_catalogue(self) -> None:
        if capabilities_of(self.backend).constraints and self.catalogue is not None:
            self.backend.register_catalogue(self.catalogue.key, self.catalogue.titles())

    def decide(self, observation: Observation) -> tuple[Observation, float | None]:
        """``observation`` narrowed to the action the calibrated threshold picks when it answers a
        recommendation (and the P(accept) read), else unchanged with None."""
        last = observation.last
        if (self.accept_threshold is None or last is None or last.action is not Action.RECOMMEND
                or Action.ACCEPT not in observation.legal_actions(self.role)):
            return observation, None
        probs = self.action_probabilities(observation)
        if probs is None:
            return observation, None
        from interplay.decision_calibration import thresholded_action

        action = thresholded_action(probs, self.accept_threshold)
        return observation.model_copy(update={"allowed_actions": frozenset({Action(action)})}), probs.get("accept", 0.0)

    def act_batch(self, observations: list[Observation]) -> list[Turn | ProtocolError]:
        decided = [self.decide(obs) for obs in observations]
        observations = [obs for obs, _ in decided]
        groups: dict[GenerationParams, list[int]] = {}
        for i, obs in enumerate(observations):
            groups.setdefault(self._params(obs), []).append(i)
        results: list[Turn | ProtocolError | None] = [None] * len(observations)
        if self.constrains and not self._registered:
            self._register_catalogue()
            self._registered = True
        for params, idx in groups.items():
            extra = {}
            if self.constrains:
                extra["constraints"] = [self.constraint(observations[i]) for i in idx]
            if capabilities_of(self.backend).chat:  # a chat API applies its own template
                outputs = self.backend.chat([self.messages(observations[i]) for i in idx], params, **extra)
            else:
                outputs = self.backend.generate([self.prompt(observations[i]) for i in idx], params, **extra)
            mode = self.decoding_mode()
            for i, out in zip(idx, outputs):
                try:
                    turn = self.parse(self.prefill + out, observations[i])
                    turn.meta["decoding"] = mode
                    if decided[i][1] is not None:
                        turn.meta["p_accept"] = decided[i][1]
                    results[i] = turn
                except ProtocolError as exc:
                    results[i] = exc
                    continue
                if observations[i].rank_items and TITLE_OPEN in out:
                    turn.meta["ranked_items"] = self.rank(observations[i], out, observations[i].rank_items,
                                                          observations[i].rank_beam)
        return results  # type: ignore[return-value]

    def action_probabilities(self, observation: Observation) -> dict[str, float] | None:
        """P(action) over the legal actions of this turn, read from the model without generating:
        the likelihood of each action tag right after the prompt (and ``<action>``), normalised
        over the legal actions. With the protocol tokens added (fine-tuned checkpoints) each tag is
        one token, so the most probable action is the one greedy constrained decoding writes;
        with a plain tokenizer a tag is several tokens and the two can differ. None when the
        backend cannot score (an HTTP server)."""
        caps = capabilities_of(self.backend)
        if not caps.scoring or caps.chat:
            return None
        import math

        actions = sorted(observation.legal_actions(self.role), key=lambda a: a.value)
        lead = "" if self.prefill.endswith(ACTION_OPEN) else ACTION_OPEN  # fine-tuned agents write it themselves
        tags = [lead + f"<{a.value}>" for a in actions]
        scores = self.backend.score_continuations([self.prompt(observation)], [tags])[0]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        return {a.value: w / total for a, w in zip(actions, weights)}

    def turn_likelihood(self, observation: Observation, turn: Turn) -> tuple[float, int] | None:
        """Log-likelihood of ``turn`` in this agent's wire format after its prompt (the part the
        prompt's prefill does not already hold), and its token count. None when the backend
        cannot score."""
        caps = capabilities_of(self.backend)
        if not caps.scoring or caps.chat:
            return None
        text = format_turn(turn)
        if self.prefill and text.startswith(self.prefill):
            text = text[len(self.prefill):]
        tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self.backend.score_continuations([self.prompt(observation)], [[text]])[0][0], tokens

    def rank(self, observation: Observation, output: str, k: int, beam: int = 0) -> list[str]:
        """The ``k`` catalogue titles the model finds most likely at the first ``<movie_title>`` of
        its ``output`` for this observation, best first (empty when the backend cannot rank);
        exact, or by a beam of ``beam`` prefixes per token depth when ``beam > 0``. When the turn's
        titles are narrowed to candidates, those come first, by their exact likelihood."""
        caps = capabilities_of(self.backend)
        if not caps.ranking or caps.chat or self.catalogue is None or not len(self.catalogue):
            return []
        prompt = self.prompt(observation) + output[: output.index(TITLE_OPEN) + len(TITLE_OPEN)]
        narrowed = self.candidate_titles(observation) if self.constrains else None
        if not narrowed or not caps.scoring:
            return self.backend.rank_titles([prompt], self.catalogue.key, k, beam)[0]
        # the candidates it could name, by likelihood (exact: one continuation each), then the rest
        scores = self.backend.score_continuations([prompt], [[t + TITLE_CLOSE for t in narrowed]])[0]
        head = [t for _, t in sorted(zip(scores, narrowed), key=lambda p: -p[0])]
        if k <= len(head):
            return head[:k]
        rest = self.backend.rank_titles([prompt], self.catalogue.key, k + len(head), beam)[0]
        seen = set(head)
        return (head + [t for t in rest if t not in seen])[:k]

    def messages(self, observation: Observation) -> list[dict]:
        """The chat messages of this observation (what a chat API receives)."""
        return build_messages(self.role, self.view, observation.history, observation.candidates)

    def parse(self, raw: str, observation: Observation) -> Turn:
        """The turn in ``raw``; strict protocol parsing (zero-shot agents add a fallback)."""
        return parse_turn(raw, role=self.role)

    def act(self, observation: Observation) -> Turn:
        result = self.act_batch([observation])[0]
        if isinstance(result, ProtocolError):
            raise result
        return result


class UserSimulator(LLMAgent):
    """LLM user simulator: sees the persona and target attributes, never the target title."""

    role = Role.USER


class RecommenderSimulator(LLMAgent):
    """LLM recommender simulator: sees the conversation (and the persona if configured)."""

    role = Role.RECOMMENDER


class FineTunedAgent(LLMAgent):
    """An LLM agent on a checkpoint from ``interplay train``: its prompt is the training
    serialisation itself (``interplay.training.serialize.inference_prompt``), so the model sees at
    inference exactly the token layout it was trained on, and it writes ``<action>`` itself.
    ``grounded`` / ``with_candidates``: the checkpoint was trained on grounded observations / with
    recommender candidates; one that was not gets them stripped, so it never sees a layout it was
    not trained on. ``grounding_match``: it was trained with match counts on the facts.
    ``prompt_layout``: the header layout it was trained on (default: the current one)."""

    def __init__(self, *args, grounded: bool = False, with_candidates: bool = False, grounding_match: bool = False,
                 prompt_layout: int | None = None, **kwargs):
        from interplay.training.serialize import PROMPT_LAYOUT

        kwargs.setdefault("prefill", "")
        super().__init__(*args, **kwargs)
        self.grounded = grounded
        self.with_candidates = with_candidates
        self.grounding_match = grounding_match
        self.prompt_layout = prompt_layout or PROMPT_LAYOUT
        from interplay.training.serialize import END

        self.params = self.params.model_copy(update={"stop": (*self.params.stop, END)})

    def prompt(self, observation: Observation) -> str:
        from interplay.training.serialize import inference_prompt

        history = observation.history if self.grounded else strip_grounding(observation.history)
        if not self.with_candidates:
            return inference_prompt(self.role, self.view, strip_candidates(history), match=self.grounding_match,
                                    layout=self.prompt_layout)
        return inference_prompt(self.role, self.view, history, observation.candidates, match=self.grounding_match,
                                layout=self.prompt_layout)


class FineTunedUserSimulator(FineTunedAgent):
    """UserSim loaded from a checkpoint (spec ``usersim:CKPT_DIR``)."""

    role = Role.USER


class FineTunedRecommenderSimulator(FineTunedAgent):
    """RecSim loaded from a checkpoint (spec ``recsim:CKPT_DIR``)."""

    role = Role.RECOMMENDER
