"""Ship a trained adapter as the package's default simulator: copy its files (not the resumable
``checkpoint-N`` folders) into ``interplay/simulators/<name>/`` and write its model card."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from interplay.protocol import Role

#: what a shipped adapter folder keeps from a training folder
SHIPPED_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja", "interplay_training.json",
                 "decision_calibration.json")
MAX_MB = 25.0


def _commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _stages(folder: Path) -> list[dict]:
    """The training record of ``folder`` and of each earlier stage it continued (``model`` chain)."""
    out, seen = [], set()
    while folder and (folder / "interplay_training.json").is_file() and folder not in seen:
        seen.add(folder)
        record = json.loads((folder / "interplay_training.json").read_text())
        out.append({"folder": str(folder), **record})
        base = record["config"].get("model")
        folder = Path(base) if base else None
    return out[::-1]


def model_card(folder: Path, role: Role, command: str, figures: list[str], shipped: Path | None = None) -> str:
    """Markdown model card of the adapter trained in ``folder`` (shipped as ``shipped``): data,
    recipe, command, commit, training time and loss per stage, figures."""
    from interplay.results_docs import checkpoint_hash
    from interplay.backends.adapters import adapter_base, adapter_size_mb

    stages = _stages(folder)
    shipped = shipped or folder
    name = "UserSim" if role is Role.USER else "RecSim"
    lines = [f"# {name}: the simulator shipped with Interplay", "",
             f"A LoRA adapter on `{adapter_base(shipped)}` (the added action and tag tokens trained as PEFT "
             f"trainable token rows), {adapter_size_mb(shipped):.1f} MB, content hash `{checkpoint_hash(shipped)}`. "
             f"Use it as `{name.lower()}` (no checkpoint) or `{name.lower()}:PATH`; the transformers backend "
             "merges it into the base model at load (`interplay merge-adapter` writes a full checkpoint for vLLM).",
             "", "## Data", ""]
    data = {s["config"]["data"] for s in stages}
    for d in sorted(data):
        build = Path(d) / "build.json"
        info = json.loads(build.read_text()) if build.is_file() else {}
        lines.append(f"- `{d}`: source {info.get('source', '?')}, records {info.get('records', '?')}; "
                     "ReDial is CC BY 4.0 (Li et al., 2018).")
    lines += ["", "## Recipe (each stage continues the previous one's adapter)", "",
              "| stage | data | records | examples | epochs | steps | dtype | time (s) | valid loss | key settings |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    keys = ("grounded", "grounding_match", "counterfactual_negatives", "decision_examples", "whole_dialogues",
            "lora_rank", "lora_targets", "lr", "max_length", "prompt_layout")
    for i, s in enumerate(stages, 1):
        c, m = s["config"], s["metrics"]
        settings = ", ".join(f"{k}={c.get(k)}" for k in keys if k in c)
        steps = next((h.get("step") for h in reversed(s["log_history"]) if "train_runtime" in h), "?")
        valid = ", ".join(f"{x:.3f}" for x in m.get("valid_loss", [])) or "-"
        lines.append(f"| {i} | `{c['data']}` | {m.get('train_records')} | {m.get('train_examples')} | {c['epochs']} | "
                     f"{steps} | {m.get('dtype')} | {stage_time(m['train'], steps)} | {valid} | {settings} |")
    lines += ["", "## How it was made", "", f"    {command}", "",
              f"Code at commit `{_commit(Path(__file__).resolve().parents[2])}`. The time column is this "
              "machine's (see `interplay_training.json` for the whole record). On a GPU each stage takes "
              "about a minute: one H200 trained the same two UserSim stages (full fine-tuning, 500 "
              "dialogues and 993 decision windows) in 48 s and 64 s against ~40 and 55 minutes on a "
              "2-core CPU (`docs/results/training-recipe-h200-vs-cpu.json`); these adapters were not "
              "timed on a GPU.", "", "## Figures", ""]
    lines += [f"- {f}" for f in figures] or ["- Not measured yet for this adapter: see docs/simulators.md."]
    return "\n".join(lines) + "\n"


def stage_time(train: dict, steps: object) -> str:
    """A stage's training time in seconds as the card shows it. A resumed stage's ``train_runtime``
    covers only the last process, which ran ``train_steps_per_second`` x runtime of the steps: that
    is said, with the whole stage at the same pace."""
    runtime, rate = train.get("train_runtime", 0), train.get("train_steps_per_second")
    done = round(rate * runtime) if rate else None
    if isinstance(steps, int) and done is not None and 0 < done < steps - 1:
        return f"{runtime:.0f} for the last {done} of {steps} steps (resumed; ~{steps / rate:.0f} at that pace)"
    return f"{runtime:.0f}"


def ship(folder: Path, role: Role, command: str, figures: list[str] | None = None, dest: Path | None = None) -> Path:
    """Copy the adapter at ``folder`` into the package (or ``dest``) with its model card; refuse a
    folder that is not an adapter of ``role`` or is over :data:`MAX_MB`."""
    from interplay.simulators import shipped_dir
    from interplay.backends.adapters import adapter_size_mb, is_adapter

    folder = Path(folder)
    if not is_adapter(folder):
        raise ValueError(f"{folder}: not an adapter folder (train with --lora)")
    trained = json.loads((folder / "interplay_training.json").read_text())["config"]["role"]
    if trained != role.value:
        raise ValueError(f"{folder}/interplay_training.json: field config.role is {trained!r}, not {role.value!r}")
    dest = Path(dest) if dest else shipped_dir(role)
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SHIPPED_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, tmp / name)
    if (size := adapter_size_mb(tmp)) > MAX_MB:
        shutil.rmtree(tmp)
        raise ValueError(f"{folder}: the adapter's files are {size:.1f} MB, over the {MAX_MB:.0f} MB a shipped one may be")
    (tmp / "README.md").write_text(model_card(folder, role, command, figures or [], shipped=tmp))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
