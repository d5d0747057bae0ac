"""Rule-based action annotation of dialogue turns, and the IARD gold-act mapping.

The rules, in order (first match wins):

recommender
  1. names a title the user has not brought up first -> ``recommend``
  2. asks something (``?`` or a question opener) -> ``inquire``
  3. greets or says goodbye -> ``greeting``
  4. otherwise -> ``feedback`` (comments, explanations, answers)

user
  1. after a recommendation, says it will watch / likes the idea, and rejects nothing -> ``accept``
  2. asks for a recommendation or states a preference -> ``disclose-goal``
  3. asks something else (about a suggested movie) -> ``inquire``
  4. greets or says goodbye -> ``greeting``
  5. otherwise -> ``feedback`` (seen it, rejections, small talk)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from interplay.protocol import Action, Role

_ACCEPT = re.compile(
    r"\b((i|we)\s*('?ll|'?d|will|would|might|may|shall|am going to|'?m going to|gonna|need to|want to|have to|"
    r"should|must|could|can't wait to)\s+(definitely |probably |have to |def |just |be sure to |really |surely |"
    r"also |totally |check |go )*(watch|check|try|look|see|add|give|put|rent|stream|keep|consider|take a look)|"
    r"sounds? (good|great|interesting|fun|awesome|perfect|cool|amazing|like)|i('d| would) (probably )?(like|love|"
    r"enjoy) (it|that|to)|great (suggestion|idea|choice|pick|rec)|good (suggestion|idea|choice|pick|one|rec)|"
    r"i accept|that('s| is| was) a good one|(on|to) my (short |watch )?(list|watch ?list)|"
    r"look (forward|foward) to (watching|seeing)|give (it|that|them) a (go|try|shot|watch|look)|rent (it|that)|"
    r"thanks?( you)?( so much)? for (the|your|all (the|your)) (great |good |awesome )?(suggestion|recommendation)s?|"
    r"(will|would|may|might) work|one to consider|perfect|i love (it|that one)|that works|i will thanks?|"
    r"(want|wanting|need) to (see|watch)|(wil|ill|i'?ll( have| ahve)? to|may|might)( need to| have to)? "
    r"(check|watch|look|try)|i'?m interested|intriguing|my kind of movie|good suggestions)\b",
    re.I,
)
_REJECT = re.compile(
    r"\b(not (interested|a fan|for me|really (into|my))|(don't|do not|didn't|did not) (really )?(like|want|enjoy|"
    r"care)|no,? thanks|(won't|will not|wouldn't) (watch|like|enjoy)|not my (thing|type|style|cup)|hate)\b",
    re.I,
)
_GOAL = re.compile(
    r"\b(i (really |also |mostly |usually |just )?(like|love|enjoy|prefer|adore|want|need|am into|'m into)|"
    r"i'm (looking|searching|in the mood)|looking for|in the mood|(can|could|would) you (recommend|suggest)|"
    r"any (suggestions|recommendations|ideas)|recommend (me|a|some)|suggest (me|a|some)|my fav(ou?rite)?|"
    r"something (like|with|that|similar)|i('m| am) a (big )?fan|fan of|comedies|comedy|horror|thrillers?|"
    r"drama|romantic|romance|action|sci-?fi|documentar|animated|animation|kids|family|funny)\b",
    re.I,
)
_QUESTION = re.compile(r"\?|^(what|who|which|when|where|why|how|have you|did you|do you|is it|are there|can you)\b", re.I)
_GREETING = re.compile(
    r"^\W*(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening)|greetings)\b|"
    r"\b(bye|goodbye|good bye|have a (good|great|nice)|take care|you're welcome|you are (most )?welcome|"
    r"nice (talking|chatting)|enjoy your|see you)\b",
    re.I,
)


@dataclass
class DialogueContext:
    """What the annotator knows of the dialogue before the turn it labels."""

    user_titles: set[str] = field(default_factory=set)  # titles the user brought up
    recommended: bool = False  # has the recommender recommended anything yet
    last_recommender_action: Action | None = None

    def update(self, role: Role, action: Action, titles: list[str]) -> None:
        if role is Role.USER:
            self.user_titles.update(t.lower() for t in titles)
        else:
            self.last_recommender_action = action
            self.recommended = self.recommended or action is Action.RECOMMEND


def annotate_turn(role: Role, text: str, titles: list[str], ctx: DialogueContext) -> Action:
    """The action of one turn by the rules in the module docstring."""
    if role is Role.RECOMMENDER:
        if any(t.lower() not in ctx.user_titles for t in titles):
            return Action.RECOMMEND
        if _QUESTION.search(text.strip()):
            return Action.INQUIRE
        if _GREETING.search(text):
            return Action.GREETING
        return Action.FEEDBACK
    if ctx.recommended and _ACCEPT.search(text) and not _REJECT.search(text):
        return Action.ACCEPT
    if _GOAL.search(text):
        return Action.DISCLOSE_GOAL
    if _QUESTION.search(text.strip()):
        return Action.INQUIRE
    if _GREETING.search(text):
        return Action.GREETING
    return Action.FEEDBACK


#: IARD gold intents -> the six actions. An utterance with several intents takes the first action
#: of ACTION_PRECEDENCE among them.
IARD_ACTIONS: dict[str, dict[str, Action]] = {
    "AGENT": {
        "REC-S": Action.RECOMMEND, "REC-E": Action.RECOMMEND,  # recommend (show / explore)
        "REQ": Action.INQUIRE, "CLA": Action.INQUIRE,  # request preferences, clarify
        "EXP-I": Action.FEEDBACK, "EXP-P": Action.FEEDBACK, "EXP-S": Action.FEEDBACK,  # explanations
        "RESP": Action.FEEDBACK, "R-ANS": Action.FEEDBACK,  # respond, answer
        "OTH": Action.GREETING, "END": Action.GREETING,  # social opening / closing
    },
    "USER": {
        "ACC": Action.ACCEPT,
        "IQU": Action.DISCLOSE_GOAL, "PRO": Action.DISCLOSE_GOAL, "ASK": Action.DISCLOSE_GOAL,
        "ANS": Action.DISCLOSE_GOAL, "CRI-A": Action.DISCLOSE_GOAL, "CRI-F": Action.DISCLOSE_GOAL,
        "CRI-C": Action.DISCLOSE_GOAL, "REF": Action.DISCLOSE_GOAL,  # query, preferences, critiques
        "INQ": Action.INQUIRE,  # asks about an item
        "REJ": Action.FEEDBACK, "SEE": Action.FEEDBACK, "NRE": Action.FEEDBACK, "CON": Action.FEEDBACK,
        "STO": Action.FEEDBACK,
        "OTH": Action.GREETING, "END": Action.GREETING,
    },
}
ACTION_PRECEDENCE = [Action.ACCEPT, Action.RECOMMEND, Action.DISCLOSE_GOAL, Action.INQUIRE, Action.FEEDBACK,
                     Action.GREETING]


def iard_action(participant: str, intents: list[str]) -> Action:
    """The action of an IARD utterance from its gold intents (unknown intents raise KeyError)."""
    actions = {IARD_ACTIONS[participant][i] for i in intents}
    for a in ACTION_PRECEDENCE:
        if a in actions:
            return a
    raise KeyError(f"no intents for {participant}")


class RuleAnnotator:
    """The rule-based annotator over a whole dialogue (each turn sees the labels before it)."""

    name = "rule"

    def annotate_dialogue(self, turns: list[tuple[Role, str, list[str]]]) -> list[tuple[Action, str]]:
        ctx = DialogueContext()
        out = []
        for role, text, titles in turns:
            action = annotate_turn(role, text, titles, ctx)
            ctx.update(role, action, titles)
            out.append((action, self.name))
        return out


_DEFINITIONS = {
    Action.RECOMMEND: "proposes a specific movie",
    Action.INQUIRE: "asks a question",
    Action.GREETING: "says hello or goodbye",
    Action.DISCLOSE_GOAL: "says what kind of movie they want or like",
    Action.FEEDBACK: "comments or reacts without accepting",
    Action.ACCEPT: "agrees to watch a recommended movie",
}


class LLMAnnotator:
    """Labels turns by prompting a causal LM through a backend, all turns of a dialogue in one batch.

    The model sees the role's allowed actions with one-line definitions, the previous turn and the
    turn, and answers with an action name; the first allowed name in its answer wins. An answer
    naming none falls back to the rule annotator, and the turn's label source says ``llm-fallback``.
    """

    name = "llm"

    def __init__(self, backend, tokenizer, max_new_tokens: int = 6):
        from interplay.backends.base import GenerationParams

        self.backend, self.tokenizer = backend, tokenizer
        self.params = GenerationParams(max_new_tokens=max_new_tokens, stop=("\n",))
        self.rules = RuleAnnotator()

    def prompt(self, role: Role, text: str, previous: str | None) -> str:
        from interplay.protocol import ROLE_ACTIONS

        allowed = [a for a in _DEFINITIONS if a in ROLE_ACTIONS[role]]
        defs = "\n".join(f"- {a.value}: the {role.value} {_DEFINITIONS[a]}" for a in allowed)
        content = (f"Previous turn: {previous or '(none)'}\nThe {role.value} says: {text}\n"
                   f"Which action is this? Choose one of: {', '.join(a.value for a in allowed)}.")
        messages = [{"role": "system", "content": f"You label turns of movie-recommendation dialogues.\n{defs}\n"
                                                  "Answer with the action name only."},
                    {"role": "user", "content": content}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\nAction:"

    def annotate_dialogue(self, turns: list[tuple[Role, str, list[str]]]) -> list[tuple[Action, str]]:
        from interplay.protocol import ROLE_ACTIONS

        prompts = [self.prompt(role, text, turns[i - 1][1] if i else None) for i, (role, text, _) in enumerate(turns)]
        answers = self.backend.generate(prompts, self.params)
        fallback = self.rules.annotate_dialogue(turns)
        out = []
        for (role, _, _), answer, rule in zip(turns, answers, fallback):
            low = answer.lower()
            hits = sorted((low.find(a.value), a) for a in ROLE_ACTIONS[role] if a.value in low)
            out.append((hits[0][1], "llm") if hits else (rule[0], "llm-fallback"))
        return out


def make_annotator(spec: str = "rule"):
    """``rule``, ``llm`` (the default model) or ``llm:MODEL`` (a HF id or path)."""
    kind, _, model = spec.partition(":")
    if kind == "rule":
        return RuleAnnotator()
    if kind == "llm":
        from interplay.backends.transformers_backend import TransformersBackend

        backend = TransformersBackend(model or None)
        return LLMAnnotator(backend, backend.tokenizer)
    raise ValueError(f"unknown annotator {spec!r}: use rule, llm or llm:MODEL")
