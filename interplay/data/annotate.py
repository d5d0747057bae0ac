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
