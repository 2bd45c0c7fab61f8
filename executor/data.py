"""Conversations -> token ids with loss on assistant tokens only, optional packing, and the collator.

Masking: the conversation is rendered with the model's chat template and tokenized once. For each
assistant turn ``i``, the template renders ``messages[:i]`` with the generation prompt (the prompt)
and ``messages[:i+1]`` (prompt + answer); both must tokenize as prefixes of the whole conversation,
and the tokens between them (the answer and its end-of-turn tokens) are the labels. Everything else
is -100. A template under which that prefix property fails (a merge across the boundary, or a
template that renders earlier turns differently) is a clear UserError, never silent wrong masking.

Packing: examples are concatenated into rows of at most ``max_seq_len`` tokens with ``position_ids``
restarting at 0 for each example and NO attention mask. transformers 5.x then builds a block-causal
mask from the position ids (``masking_utils.find_packed_sequence_indices``; flash-attention-2 uses the
same position ids for its varlen kernels), so packed examples never attend to each other -- but only
when the forward runs without a KV cache (``use_cache=False``; with ``config.use_cache`` on, a cache is
created and the packed mask is silently skipped, so train.py turns it off). The test
``test_packed_logits_equal_alone`` proves it on CPU (sdpa and eager).

torch is imported only inside the collator call.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from advisor.errors import UserError

IGNORE = -100


def _render(tokenizer, messages, *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_conversation(tokenizer, messages: list[dict], *, where: str = "row") -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one conversation (not truncated), labels on assistant turns only."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model's tokenizer has no chat template: set one (tokenizer_config.json "
                        "'chat_template' or chat_template.jinja) so conversations can be rendered")
    try:
        ids = _render(tokenizer, messages, generation_prompt=False)
        labels = [IGNORE] * len(ids)
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = _render(tokenizer, messages[:i], generation_prompt=True)
            upto = _render(tokenizer, messages[:i + 1], generation_prompt=False)
            for name, part in (("prompt", prompt), (f"conversation up to assistant turn {i}", upto)):
                if ids[:len(part)] != part:
                    k = next((j for j, (a, b) in enumerate(zip(ids, part)) if a != b), min(len(ids), len(part)))
                    raise UserError(
                        f"{where}: under this chat template the {name} does not tokenize as a prefix of the whole "
                        f"conversation (they differ at token {k}), so the assistant tokens cannot be masked "
                        f"reliably; use a template that renders each turn the same way whatever follows")
            if len(upto) <= len(prompt):
                raise UserError(f"{where}: the chat template renders assistant turn {i} as no tokens")
            labels[len(prompt):len(upto)] = ids[len(prompt):len(upto)]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a template's own raise_exception() is the user's problem
        raise UserError(f"{where}: the chat template refused it: {exc}") from None
    return {"input_ids": ids, "labels": labels}


@dataclass
class Encoded:
    examples: list[dict[str, list[int]]]
    rows: int
    truncated: int = 0
    tokens: int = 0
    label_tokens: int = 0
    notes: list[str] = field(default_factory=list)


_NAMED = 10  # refused rows named in the error


def encode_rows(tokenizer, rows: list[list[dict]], *, max_seq_len: int, source: str = "train",
                lines: list[int] | None = None, over_max_seq_len: str = "truncate-response") -> Encoded:
    """Every row encoded; rows over ``max_seq_len`` follow the plan's rule (advisor.models.OVER_MAX_SEQ_LEN_RULE):
    ``truncate-response`` cuts a row at ``max_seq_len`` while at least one answer token remains,
    ``refuse`` refuses every row over it. Refused rows are one UserError naming each by ``source:line``
    (``lines`` are the rows' line numbers in the file; without them, ``source row N``)."""
    out = Encoded(examples=[], rows=len(rows))
    refused = []
    for n, messages in enumerate(rows, 1):
        where = f"{source}:{lines[n - 1]}" if lines is not None else f"{source} row {n}"
        ex = encode_conversation(tokenizer, messages, where=where)
        if len(ex["input_ids"]) > max_seq_len:
            if over_max_seq_len == "refuse":
                refused.append(where)
                continue
            out.truncated += 1
            ex = {k: v[:max_seq_len] for k, v in ex.items()}
        if all(t == IGNORE for t in ex["labels"]):
            refused.append(where)
            continue
        out.tokens += len(ex["input_ids"])
        out.label_tokens += sum(t != IGNORE for t in ex["labels"])
        out.examples.append(ex)
    if refused:
        why = ("are longer than" if over_max_seq_len == "refuse" else "have no answer token within")
        shown = ", ".join(refused[:_NAMED]) + (f" and {len(refused) - _NAMED} more" if len(refused) > _NAMED else "")
        raise UserError(f"{len(refused)} rows {why} max_seq_len {max_seq_len} (rule '{over_max_seq_len}'; raise "
                        f"max_seq_len in the plan, or shorten or remove them, and re-plan): {shown}")
    if out.truncated:
        out.notes.append(f"{out.truncated} of {out.rows} rows truncated to max_seq_len {max_seq_len} "
                         f"(rule '{over_max_seq_len}': the response loses its end)")
    return out


def pack(examples: list[dict[str, list[int]]], *, max_seq_len: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Greedy packing (in a seeded shuffled order) into rows of at most ``max_seq_len`` tokens.

    Each packed row holds ``input_ids``, ``labels`` and ``position_ids`` restarting at 0 per example.
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    packed: list[dict[str, list[int]]] = []
    cur: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for i in order:
        ex = examples[i]
        if cur["input_ids"] and len(cur["input_ids"]) + len(ex["input_ids"]) > max_seq_len:
            packed.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += ex["input_ids"]
        cur["labels"] += [IGNORE] + ex["labels"][1:]  # never predict across the example boundary
        cur["position_ids"] += list(range(len(ex["input_ids"])))
    if cur["input_ids"]:
        packed.append(cur)
    return packed


class Collator:
    """Pads a batch on the right. Padded rows get an attention mask; packed rows get position ids only.

    ``tokens_seen`` counts real (non-pad) tokens collated; ``batch_tokens`` queues each batch's count in
    order (sp > 1: sp shares of it, one per micro-step), for the metrics callback to take one per micro-step
    as Trainer consumes them (batches are collated ahead of use, and counting on the host needs no device sync).

    ``sp`` > 1 (zero3-sp, DeepSpeed Ulysses): every batch is padded to ``width`` (max_seq_len rounded up to a
    multiple of sp; each rank takes width / sp tokens of every row). Ulysses' data loader all-gathers each
    rank's batch over the group, and gloo refuses tensors of unequal shapes ("ProcessGroupGloo::allgather:
    invalid tensor size"), so the width is fixed rather than the batch's longest. Every row gets position ids
    and no mask: Ulysses shards each tensor along the sequence, needs the position ids
    (ulysses_sp.UlyssesSPDataLoaderAdapter) and on sdpa drops any mask for a causal one over the whole row.
    Pads sit on the right with labels -100, so under that causal mask no real token attends to them and the
    loss is the padded-with-mask one (tests/executor/test_sequence_parallel.py checks it).
    """

    def __init__(self, pad_id: int, *, packed: bool, sp: int = 1, width: int = 0):
        self.pad_id, self.packed, self.sp, self.width, self.tokens_seen = pad_id, packed, sp, width, 0
        self.batch_tokens: deque[int] = deque()

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.sp > 1:
            width = -(-max(width, self.width) // self.sp) * self.sp
        n = len(features)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        extra = torch.zeros((n, width), dtype=torch.long)
        for r, f in enumerate(features):
            k = len(f["input_ids"])
            ids[r, :k] = torch.tensor(f["input_ids"])
            labels[r, :k] = torch.tensor(f["labels"])
            if self.packed:  # the pad tail is one more "example" of its own: positions restart at 0
                extra[r, :k] = torch.tensor(f["position_ids"])
                extra[r, k:] = torch.arange(width - k)
            elif self.sp > 1:
                extra[r] = torch.arange(width)
            else:
                extra[r, :k] = 1
            self.tokens_seen += k
        real = sum(len(f["input_ids"]) for f in features)
        # sp > 1: Ulysses' loader turns each collated batch into sp micro-steps (one per rank's batch of the group),
        # each rank training on 1/sp of every row: sp counts summing to this batch's (the group's mean per rank)
        self.batch_tokens.extend(real // self.sp + (i < real % self.sp) for i in range(self.sp))
        return {"input_ids": ids, "labels": labels,
                ("position_ids" if self.packed or self.sp > 1 else "attention_mask"): extra}


def build_train_data(tokenizer, rows: list[list[dict]], *, max_seq_len: int, packing: bool, seed: int = 0,
                     source: str = "train", lines: list[int] | None = None,
                     over_max_seq_len: str = "truncate-response", sp: int = 1):
    """(dataset as a list of dicts, collator, Encoded stats) ready for Trainer (sp: Collator's)."""
    enc = encode_rows(tokenizer, rows, max_seq_len=max_seq_len, source=source, lines=lines,
                      over_max_seq_len=over_max_seq_len)
    dataset = pack(enc.examples, max_seq_len=max_seq_len, seed=seed) if packing else enc.examples
    if packing:
        enc.notes.append(f"packed {len(enc.examples)} examples into {len(dataset)} rows of <= {max_seq_len} tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return dataset, Collator(int(pad_id if pad_id is not None else 0), packed=packing, sp=sp,
                                                                 width=max_seq_len), enc
