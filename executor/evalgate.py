"""Golden-set scoring and the per-epoch gate verdict recorded in ``RUN_DIR/gate.json``.

The golden set is scored on the base model before training (the baseline) and after every epoch:
the mean loss on the expected-answer tokens, and exact-match / contains of greedy generations of
bounded length. ``judge`` compares an epoch to the baseline against the plan's thresholds.

How train.py uses it (from a TrainerCallback):

- ``on_train_begin``: if ``read_gate(run_dir)`` has no baseline, every rank calls
  ``score_golden(model, ...)`` and rank 0 calls ``record_baseline``. On a resumed run the baseline is
  already recorded and must NOT be re-scored: by then the model holds the resumed checkpoint's
  weights, not the base model's. ``record_baseline`` therefore keeps an existing baseline unless
  ``replace=True``.
- ``on_epoch_end`` (or after the epoch checkpoint is saved): every rank calls ``score_golden`` (the
  forward passes of a sharded model are collective), rank 0 calls ``record_epoch``. Re-recording an
  epoch (resume after a kill) replaces that epoch's entry.

``model`` is the Hugging Face module (``trainer.model``; for DeepSpeed the engine's ``.module``),
not a DeepSpeed engine. torch is imported only inside ``score_golden``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.models import Evaluation
from advisor.yamlio import atomic_write_text
from advisor.rows import normalize_golden_row, read_jsonl

from executor import names

GATE_FILE = names.GATE
_LOSS_BATCH = 4   # sequences per teacher-forced forward pass (logits are batch x seq x vocab)
_GEN_BATCH = 8    # prompts per generate() call


@dataclass
class GoldenExample:
    """One golden row: the conversation up to the answer, and the answer expected from the model."""

    messages: list[dict[str, str]]
    expected: str
    where: str = field(default="", compare=False)  # "file:line", for messages


# --------------------------------------------------------------------------- loading


def _row_to_example(row: Any) -> GoldenExample | str:
    """A GoldenExample, or the reason the row is bad (advisor.rows: the same rules as `sftplan plan --golden`)."""
    got = normalize_golden_row(row)
    return got if isinstance(got, str) else GoldenExample(*got)


def load_golden(path: str | Path) -> list[GoldenExample]:
    """Read a golden JSONL file. One UserError lists every bad row, one per line (``file:line: reason``),
    the same way as training rows."""
    examples = []
    for lineno, ex in read_jsonl(path, _row_to_example, "golden", "golden set"):
        ex.where = f"{path}:{lineno}"
        examples.append(ex)
    return examples


# --------------------------------------------------------------------------- scoring


def normalize(text: str) -> str:
    """Whitespace-normalised text: runs of whitespace become one space, ends stripped."""
    return " ".join(text.split())


def _encode(tokenizer, ex: GoldenExample) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids). Under a chat template when the tokenizer has one.

    With a template the answer is everything the template adds after the generation prompt (the
    answer text plus its end-of-turn tokens), which is what training puts loss on. When the full
    conversation's ids do not start with the prompt's ids (a merge across the boundary), the text
    after the prompt is tokenized on its own so the prompt the model generates from is unchanged.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            prompt_text = tokenizer.apply_chat_template(ex.messages, tokenize=False, add_generation_prompt=True)
            full_text = tokenizer.apply_chat_template(
                ex.messages + [{"role": "assistant", "content": ex.expected}], tokenize=False)
        except Exception as exc:  # noqa: BLE001 - a template's own error (jinja raise_exception) is the user's
            raise UserError(f"{ex.where or 'golden row'}: the chat template refused it: {exc}") from None
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
            return prompt_ids, full_ids[len(prompt_ids):]
        if full_text.startswith(prompt_text):
            return prompt_ids, tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
        raise UserError(f"{ex.where}: the chat template does not render the prompt as a prefix of the conversation")
    prompt_text = "\n".join(m["content"] for m in ex.messages) + "\n"
    prompt_ids = tokenizer(prompt_text)["input_ids"]
    answer_ids = tokenizer(ex.expected, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    return prompt_ids, answer_ids


def _pad_id(tokenizer) -> int:
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if cand is not None:
            return int(cand)
    return 0


def score_golden(model, tokenizer, examples: list[GoldenExample], *, max_new_tokens: int,
                 synced_gpus: bool = False) -> dict[str, float]:
    """``{"loss", "exact_match", "contains"}`` of ``model`` on the golden examples.

    - loss: mean cross-entropy per expected-answer token (token-weighted over the whole set).
    - exact_match / contains: fraction of greedy generations (at most ``max_new_tokens`` new tokens)
      equal to / containing the expected answer, after whitespace normalisation.

    Call it on EVERY rank of a sharded job (FSDP2 or ZeRO-3) with the same examples: each forward is
    collective. Pass ``synced_gpus=True`` there so ``generate`` keeps every rank stepping until all
    have finished; with False, transformers' own detection (ZeRO-3 or FSDP with world size > 1)
    decides. Generation uses the KV cache even when training turned ``config.use_cache`` off. The
    model's train/eval mode is restored on return.
    """
    import torch
    import torch.nn.functional as F

    if not examples:
        raise UserError("golden set is empty: nothing to score")
    pad = _pad_id(tokenizer)
    encoded = [_encode(tokenizer, ex) for ex in examples]
    device = next(model.parameters()).device
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    was_training = model.training
    model.eval()
    loss_sum, loss_tokens, exact, contains = 0.0, 0, 0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), _LOSS_BATCH):
                chunk = encoded[start:start + _LOSS_BATCH]
                width = max(len(p) + len(a) for p, a in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                labels = torch.full((len(chunk), width), -100, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, (p, a) in enumerate(chunk):
                    ids[i, :len(p) + len(a)] = torch.tensor(p + a)
                    labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
                    mask[i, :len(p) + len(a)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
                shift_labels = labels[:, 1:].to(logits.device)
                keep = shift_labels != -100
                picked = logits[:, :-1][keep].float()
                loss_sum += float(F.cross_entropy(picked, shift_labels[keep], reduction="sum"))
                loss_tokens += int(keep.sum())
                del logits, picked
            for start in range(0, len(encoded), _GEN_BATCH):
                chunk = encoded[start:start + _GEN_BATCH]
                width = max(len(p) for p, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, (p, _) in enumerate(chunk):  # left padding: generation continues from the end
                    ids[i, width - len(p):] = torch.tensor(p)
                    mask[i, width - len(p):] = 1
                out = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                    do_sample=False, num_beams=1, use_cache=True, pad_token_id=pad, eos_token_id=sorted(eos) or None,
                    synced_gpus=True if synced_gpus else None)
                for i, ex in enumerate(examples[start:start + _GEN_BATCH]):
                    new = []
                    for t in out[i, width:].tolist():
                        if t in eos:
                            break
                        new.append(t)
                    got = normalize(tokenizer.decode(new, skip_special_tokens=True))
                    want = normalize(ex.expected)
                    exact += int(got == want)
                    contains += int(want in got)
    finally:
        model.train(was_training)
    n = len(examples)
    return {"loss": loss_sum / max(loss_tokens, 1), "exact_match": exact / n, "contains": contains / n}


# --------------------------------------------------------------------------- verdict


def judge(baseline: dict, score: dict, evaluation: Evaluation) -> dict:
    """``{"passed", "reasons"}``: reasons name each failed threshold with its numbers.

    - golden loss may rise at most ``tolerance`` relative to the baseline's;
    - exact_match and contains may drop at most ``tolerance`` (absolute fraction) below the baseline;
    - ``min_golden_score`` (if set) is a floor on contains (the fraction of greedy answers that hold
      the expected answer).
    """
    tol = evaluation.tolerance
    reasons = []
    loss, base_loss = score["loss"], baseline["loss"]
    if not math.isfinite(loss):
        reasons.append(f"golden loss is {loss} (not finite)")
    elif loss > base_loss * (1 + tol) + 1e-12:
        rise = (loss - base_loss) / base_loss if base_loss > 0 else math.inf
        reasons.append(f"golden loss {loss:.4f} rose {rise:.1%} above the baseline {base_loss:.4f} "
                       f"(tolerance {tol:.1%})")
    for key in ("exact_match", "contains"):
        if score[key] < baseline[key] - tol - 1e-12:
            reasons.append(f"{key} {score[key]:.3f} dropped {baseline[key] - score[key]:.3f} below the baseline "
                           f"{baseline[key]:.3f} (tolerance {tol:.3f})")
    if evaluation.min_golden_score is not None and score["contains"] < evaluation.min_golden_score - 1e-12:
        reasons.append(f"contains {score['contains']:.3f} is below min_golden_score {evaluation.min_golden_score:g}")
    return {"passed": not reasons, "reasons": reasons}


# --------------------------------------------------------------------------- gate.json


def read_gate(run_dir: str | Path) -> dict:
    """gate.json as a dict; an empty gate (no baseline, no epochs) when there is none yet."""
    path = Path(run_dir) / GATE_FILE
    if not path.exists():
        return {"baseline": None, "epochs": [], "thresholds": {}}
    try:
        gate = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable gate report ({exc.__class__.__name__})") from None
    why = _gate_shape_problem(gate)
    if why:
        raise UserError(f"{path}: not a gate report ({why})")
    return gate


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _score_problem(score: Any, where: str) -> str:
    if not isinstance(score, dict):
        return f"{where} is {type(score).__name__}, expected an object"
    bad = [k for k in _SCORE_KEYS if not _is_number(score.get(k))]
    return f"{where}.{bad[0]} is missing or not a number" if bad else ""


_SCORE_KEYS = ("loss", "exact_match", "contains")


def _gate_shape_problem(gate: Any) -> str:
    """'' when ``gate`` has the shape record_baseline / record_epoch write, else what is wrong (short)."""
    if not isinstance(gate, dict):
        return f"expected an object with baseline and epochs, got {type(gate).__name__}"
    if gate.get("baseline") is not None:
        why = _score_problem(gate["baseline"], "baseline")
        if why:
            return why
    if not isinstance(gate.get("thresholds", {}), dict):
        return "thresholds is not an object"
    epochs = gate.get("epochs", [])
    if not isinstance(epochs, list):
        return f"epochs is {type(epochs).__name__}, expected a list"
    for i, e in enumerate(epochs):
        where = f"epochs[{i}]"
        if not isinstance(e, dict):
            return f"{where} is {type(e).__name__}, expected an object"
        if not _is_number(e.get("epoch")):
            return f"{where}.epoch is missing or not a number"
        if not isinstance(e.get("checkpoint"), str) or not e["checkpoint"]:
            return f"{where}.checkpoint is missing or not a folder name"
        if "/" in e["checkpoint"] or e["checkpoint"] in (".", ".."):
            return f"{where}.checkpoint {e['checkpoint']!r} is not a folder name"
        if not isinstance(e.get("step"), int) or isinstance(e.get("step"), bool):
            return f"{where}.step is missing or not an integer"
        if not isinstance(e.get("passed"), bool):
            return f"{where}.passed is missing or not true/false"
        if not isinstance(e.get("reasons"), list) or not all(isinstance(r, str) for r in e["reasons"]):
            return f"{where}.reasons is not a list of strings"
        why = _score_problem(e.get("score"), f"{where}.score")
        if why:
            return why
    if epochs and gate.get("baseline") is None:
        return "epochs recorded without a baseline"
    return ""


def _thresholds(evaluation: Evaluation) -> dict:
    return {"tolerance": evaluation.tolerance, "min_golden_score": evaluation.min_golden_score,
            "min_golden_score_metric": "contains", "max_new_tokens": evaluation.max_new_tokens,
            "loss_rule": "loss <= baseline x (1 + tolerance)",
            "score_rule": "exact_match, contains >= baseline - tolerance"}


def _write_gate(run_dir: str | Path, gate: dict) -> None:
    atomic_write_text(Path(run_dir) / GATE_FILE, json.dumps(gate, indent=2, sort_keys=False) + "\n")


def record_baseline(run_dir: str | Path, score: dict, evaluation: Evaluation, *, replace: bool = False) -> dict:
    """Record the base model's score; an existing baseline is kept (resume) unless ``replace``.

    Returns the baseline in force.
    """
    gate = read_gate(run_dir)
    if gate.get("baseline") is not None and not replace:
        return gate["baseline"]
    gate["baseline"] = {k: float(score[k]) for k in ("loss", "exact_match", "contains")}
    gate["thresholds"] = _thresholds(evaluation)
    gate.setdefault("epochs", [])
    _write_gate(run_dir, gate)
    return gate["baseline"]


def _epoch_number(epoch: float) -> int | float:
    return int(round(epoch)) if abs(epoch - round(epoch)) < 1e-6 else float(epoch)


def record_epoch(run_dir: str | Path, *, epoch: float, step: int, checkpoint: str, score: dict,
                 evaluation: Evaluation) -> dict:
    """Judge an epoch against the recorded baseline and write it into gate.json (atomically).

    ``checkpoint`` is the checkpoint folder's name (``checkpoint-<step>``; a path is reduced to its
    name). Recording an epoch again replaces its entry. Returns ``{"passed", "reasons"}``.
    """
    gate = read_gate(run_dir)
    if gate.get("baseline") is None:
        raise UserError(f"{Path(run_dir) / GATE_FILE}: no baseline recorded; score the base model first")
    verdict = judge(gate["baseline"], score, evaluation)
    entry = {"epoch": _epoch_number(epoch), "step": int(step), "checkpoint": Path(str(checkpoint)).name,
             "score": {k: float(score[k]) for k in ("loss", "exact_match", "contains")},
             "passed": verdict["passed"], "reasons": verdict["reasons"]}
    epochs = [e for e in gate.get("epochs", []) if e["epoch"] != entry["epoch"]]
    epochs.append(entry)
    gate["epochs"] = sorted(epochs, key=lambda e: e["epoch"])
    gate["thresholds"] = _thresholds(evaluation)
    _write_gate(run_dir, gate)
    return verdict


def gate_summary(gate: dict) -> str:
    """Each scored epoch's reasons on one line (what a run that no epoch passed says)."""
    if not gate.get("epochs"):
        return "gate.json records no scored epoch"
    return "; ".join(f"epoch {e['epoch']}: " + ("; ".join(e["reasons"]) or "failed") for e in gate["epochs"])


def gate_disagrees(gate: dict, evaluation: Evaluation) -> str:
    """'' when every recorded epoch's verdict is the one ``judge`` gives its scores under the plan's gate, and its
    checkpoint is its step's (``checkpoint-<step>``); else which epoch and how (an edited gate.json: promote never
    exports on a verdict the approved gate would not give)."""
    if gate.get("epochs") and gate.get("thresholds") != _thresholds(evaluation):
        return "its thresholds are not the plan's gate"
    for e in gate.get("epochs", []):
        verdict = judge(gate["baseline"], e["score"], evaluation)
        if verdict["passed"] != e["passed"] or verdict["reasons"] != e["reasons"]:
            said = "passed" if e["passed"] else "failed"
            return (f"epoch {e['epoch']} is recorded as {said}, but its scores under the plan's gate "
                    f"{'pass' if verdict['passed'] else 'fail: ' + '; '.join(verdict['reasons'])}")
        if e["checkpoint"] != names.checkpoint_name(e["step"]):
            return f"epoch {e['epoch']} (step {e['step']}) points at {e['checkpoint']}, not its step's checkpoint"
    return ""


def best_passing_epoch(run_dir: str | Path) -> dict | None:
    """The best passing epoch's gate entry, or None when no epoch passed.

    Best = highest exact_match, then highest contains, then lowest loss; on a full tie the later
    epoch (more training at equal quality).
    """
    passing = [e for e in read_gate(run_dir).get("epochs", []) if e.get("passed")]
    if not passing:
        return None
    return max(passing, key=lambda e: (e["score"]["exact_match"], e["score"]["contains"], -e["score"]["loss"],
                                       e["epoch"]))
