"""Prompt layouts: what every episode of a role has in common comes first (layout 2), checkpoints are
prompted in the layout they were trained on, and the old layout stays reproducible."""

import json

import pytest

from interplay.checkpoint_info import trained_prompt_layout
from interplay.prompting import system_text
from interplay.protocol import Role
from interplay.training.serialize import CONTEXT, header, inference_prompt, role_brief
from interplay.training.tokenize import record_view, tokenize_record
from conftest import ROOT
import sys

sys.path.insert(0, str(ROOT / "benchmarks"))
from shared_prefix import common_prefix, first_prompts  # noqa: E402

from test_training import RECORDS  # noqa: E402


def test_layout_2_puts_the_role_brief_first_and_the_episode_after():
    view = record_view(RECORDS[0], Role.USER)
    text = header(Role.USER, view, layout=2)
    assert text.startswith(role_brief(Role.USER) + "\nPreferences: ")
    assert text.index("Wants: ") > text.index("Preferences: ")
    assert "accept, disclose-goal, feedback, greeting, inquire" in role_brief(Role.USER)
    assert header(Role.USER, view, layout=1).startswith("Role: user\nPreferences: ")
    with pytest.raises(ValueError, match="unknown prompt layout 3"):
        header(Role.USER, view, layout=3)


@pytest.mark.parametrize("fine_tuned", [True, False])
def test_episodes_share_more_first_prompt_tokens_in_layout_2(tokenizer, fine_tuned):
    """Two records with different personas: the common token prefix of their first user prompts
    grows to cover the whole brief (fine-tuned) or instructions (prompted) in layout 2."""
    base = RECORDS[0]
    other = base.model_copy(update={"persona": base.persona.model_copy(
        update={"summary": "Zodiac is obsessive and meticulous; long films are fine."})})
    records = [base, other]
    before = common_prefix(first_prompts(records, Role.USER, 1, fine_tuned, tokenizer, False))
    after = common_prefix(first_prompts(records, Role.USER, 2, fine_tuned, tokenizer, False))
    brief = role_brief(Role.USER) if fine_tuned else "Reveal your wishes gradually"
    assert after > before + 20
    shared_text = tokenizer.decode(first_prompts(records, Role.USER, 2, fine_tuned, tokenizer, False)[0][:after])
    assert brief in shared_text


def test_prompted_layout_1_is_the_text_before_issue_35():
    view = record_view(RECORDS[0], Role.USER)
    old = system_text(Role.USER, view, layout=1).split("\n")
    assert old[0] == "You are a user looking for a movie to watch, talking with a recommender."
    assert old[1].startswith("General preferences: ")
    assert old[-3] == "Reveal your wishes gradually. Accept a recommended movie only if it fits what you want."
    assert old[-2].startswith("Answer with one turn in this format")
    new = system_text(Role.USER, view).split("\n")
    assert new[0].endswith("Accept a recommended movie only if it fits what you want.")
    assert new[1] == old[-2] and new[2] == old[-1] and new[3] == old[1]


def test_training_examples_and_the_agent_prompt_use_the_same_layout(tokenizer):
    record = RECORDS[0]
    for layout in (1, 2):
        ex = tokenize_record(record, tokenizer, Role.USER, max_length=4096, layout=layout)[0]
        prompt = inference_prompt(Role.USER, record_view(record, Role.USER), [], layout=layout)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ex["input_ids"][: len(ids) - 1] == ids[:-1]  # up to the speaker cue
        assert tokenizer.decode(ex["input_ids"]).startswith(CONTEXT + header(Role.USER, record_view(record, Role.USER),
                                                                       layout))


def test_a_checkpoint_is_prompted_in_the_layout_it_records(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "interplay_training.json").write_text(json.dumps({"config": {"role": "user"}}))
    (new / "interplay_training.json").write_text(json.dumps({"config": {"role": "user", "prompt_layout": 2}}))
    assert trained_prompt_layout(str(old)) == 1 and trained_prompt_layout(str(new)) == 2
