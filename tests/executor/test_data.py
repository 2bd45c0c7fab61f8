"""data.py: chat template applied, labels only on assistant tokens, the prefix check, and packing
that keeps packed examples from attending to each other (logits equal those of each example alone)."""

import pytest

from advisor.errors import UserError
from executor.data import IGNORE, Collator, build_train_data, encode_conversation, pack
from executor.tiny import CHAT_TEMPLATE, build_model, build_tokenizer, make_rows

CONV = [{"role": "system", "content": "brief"}, {"role": "user", "content": "add 2 3"},
        {"role": "assistant", "content": "5"}, {"role": "user", "content": "reverse: cat dog"},
        {"role": "assistant", "content": "dog cat"}]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer([f"user\n{p}\nassistant\n{a}\nsystem\n" for p, a in make_rows(300, 5)])


def test_labels_only_on_assistant_turns(tok):
    ex = encode_conversation(tok, CONV)
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert ex["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    learned = [t for t in ex["labels"] if t != IGNORE]
    # exactly the two answers, each followed by its end-of-turn tokens
    assert tok.decode(learned) == "5<|im_end|>\ndog cat<|im_end|>\n"
    first = ex["labels"].index(learned[0])
    assert tok.decode(ex["input_ids"][:first]).endswith("<|im_start|>assistant\n")


def test_template_not_a_prefix_is_a_clear_error(tok):
    bad = tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token="<|bos|>", eos_token="<|im_end|>",
                        pad_token="<|pad|>")
    # the generation prompt ends with a space, which merges with the answer's first word ("Ġdog")
    bad.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(UserError, match="does not tokenize as a prefix"):
        encode_conversation(bad, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "dog"}],
                            where="train row 7")


def test_template_that_drops_earlier_turns_is_refused(tok):
    bad = tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token="<|bos|>", eos_token="<|im_end|>",
                        pad_token="<|pad|>")
    bad.chat_template = CHAT_TEMPLATE.replace("{{ m['content'] }}", "{{ m['content'] if loop.last or "
                                              "m['role'] != 'assistant' else '...' }}")
    with pytest.raises(UserError, match="train row 1: .*conversation up to assistant turn 2"):
        build_train_data(bad, [CONV], max_seq_len=512, packing=False)


def test_no_template_and_truncation(tok):
    bare = tok.__class__(tokenizer_object=tok.backend_tokenizer, eos_token="<|im_end|>")
    with pytest.raises(UserError, match="no chat template"):
        encode_conversation(bare, CONV)
    with pytest.raises(UserError, match="1 rows have no answer token within max_seq_len 4 .*: train row 1$"):
        build_train_data(tok, [CONV], max_seq_len=4, packing=False)
    full = len(encode_conversation(tok, CONV)["input_ids"])
    _, _, enc = build_train_data(tok, [CONV], max_seq_len=full - 2, packing=False)
    assert enc.truncated == 1 and "truncated" in enc.notes[0]


def test_pack_and_collate(tok):
    rows = [[{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in make_rows(20, 1)]
    data, collator, enc = build_train_data(tok, rows, max_seq_len=64, packing=True)
    assert sum(len(r["input_ids"]) for r in data) == enc.tokens and len(data) < len(rows)
    assert all(len(r["input_ids"]) <= 64 for r in data)
    batch = collator(data[:2])
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert collator.tokens_seen == len(data[0]["input_ids"]) + len(data[1]["input_ids"])
    # every example starts at position 0 and its first token is never a label
    starts = [i for i, p in enumerate(data[0]["position_ids"]) if p == 0]
    assert len(starts) > 1 and all(data[0]["labels"][i] == IGNORE for i in starts)
    padded = Collator(0, packed=False)([enc.examples[0], enc.examples[1]])
    assert set(padded) == {"input_ids", "labels", "attention_mask"}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_alone(tok, attn):
    import torch

    model = build_model(len(tok), tok, seed=3).eval()
    model.config._attn_implementation = attn
    rows = [[{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in make_rows(6, 2)]
    _, _, enc = build_train_data(tok, rows, max_seq_len=512, packing=False)
    packed = pack(enc.examples, max_seq_len=512, seed=0)
    assert len(packed) == 1
    row = packed[0]
    with torch.no_grad():
        batch = Collator(tok.pad_token_id, packed=True)([row, {k: v[:10] for k, v in row.items()}])
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits[0]  # a cache turns the packed mask off; train.py sets it off
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        by_start = {tuple(ex["input_ids"]): ex for ex in enc.examples}
        for a, b in zip(starts, starts[1:]):
            ids = row["input_ids"][a:b]
            assert tuple(ids) in by_start
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[a:b], alone, rtol=1e-4, atol=1e-4)


def test_over_long_rows_follow_the_plans_rule_named_by_file_line(tok):
    """issue 11.4: a prompt longer than max_seq_len is one error naming file:line, never a trainer traceback."""
    short = [{"role": "user", "content": "add 1 2"}, {"role": "assistant", "content": "3"}]
    long_answer = [{"role": "user", "content": "add 1 2"}, {"role": "assistant", "content": "dog cat " * 40}]
    long_prompt = [{"role": "user", "content": "reverse cat dog " * 40}, {"role": "assistant", "content": "x"}]
    limit = 40
    assert len(encode_conversation(tok, long_answer)["input_ids"]) > limit
    _, _, enc = build_train_data(tok, [short, long_answer], max_seq_len=limit, packing=False,
                                 source="d/train.jsonl", lines=[1, 3])
    assert enc.truncated == 1 and len(enc.examples) == 2 and "truncated" in enc.notes[0]
    assert all(len(e["input_ids"]) <= limit for e in enc.examples)
    with pytest.raises(UserError) as exc:
        build_train_data(tok, [short, long_prompt, long_answer, long_prompt], max_seq_len=limit, packing=False,
                         source="d/train.jsonl", lines=[1, 4, 6, 9])
    assert str(exc.value).startswith("2 rows have no answer token within max_seq_len 40")
    assert str(exc.value).endswith(": d/train.jsonl:4, d/train.jsonl:9") and "\n" not in str(exc.value)
    with pytest.raises(UserError, match=r"1 rows are longer than max_seq_len 40 \(rule 'refuse'.*: d/train.jsonl:3$"):
        build_train_data(tok, [short, long_answer], max_seq_len=limit, packing=False, source="d/train.jsonl",
                         lines=[1, 3], over_max_seq_len="refuse")
