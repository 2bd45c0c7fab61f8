"""The request and plan models (advisor/models.py): plain dataclasses validated by hand-written validate()s,
the same system as the estimator's types. What pydantic did for them, they still do."""

import dataclasses

import pytest

from advisor.errors import UserError
from advisor.models import DatasetSpec, PlanRequest, SpecError
from advisor.schema_doc import field_types, is_model
from advisor.yamlio import field_loc, field_path

OK = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1000}}


def test_a_mapping_becomes_nested_models_with_defaults():
    req = PlanRequest.from_dict({**OK, "have": [{"gpu": "h100-sxm", "count": 8}], "budget_usd": 500})
    assert isinstance(req.dataset, DatasetSpec) and req.have[0].count == 8 and req.max_seq_len == 2048
    assert type(req.budget_usd) is float and req.to_dict()["budget_usd"] == 500.0  # a float field stores a float
    assert req.to_dict()["have"] == [{"gpu": "h100-sxm", "count": 8}]
    assert PlanRequest.from_dict(req.to_dict()) == req  # to_dict round-trips


@pytest.mark.parametrize("data,field", [
    ({**OK, "colour": "red"}, "colour"),
    ({"dataset": OK["dataset"]}, "model"),
    ({**OK, "dataset": {"examples": 5, "avg_tokens": 1, "extra": 1}}, "dataset.extra"),
    ({**OK, "have": [{"gpu": "h100-sxm", "count": True}]}, "have[0].count"),
    ({**OK, "have": [{"gpu": "h100-sxm", "count": 8}, {"gpu": 3, "count": 8}]}, "have[1].gpu"),
    ({**OK, "goals": ["deep-retask", "deep-retsk"]}, "goals[1]"),
    ({**OK, "max_seq_len": 2048.0}, "max_seq_len"),
    ({**OK, "gate_tolerance": float("nan")}, "gate_tolerance"),
    ({**OK, "memory_headroom": 0.6}, "memory_headroom"),
    ({**OK, "dataset": "50k rows"}, "dataset"),
])
def test_every_refusal_is_a_spec_error_on_its_field(data, field):
    with pytest.raises(SpecError) as exc:
        PlanRequest.from_dict(data)
    assert isinstance(exc.value, UserError) and exc.value.field == field, str(exc.value)


def test_a_choice_says_the_nearest_value():
    with pytest.raises(SpecError, match=r"did you mean 'deep-retask'"):
        PlanRequest.from_dict({**OK, "goals": ["deep-retsk"]})


def test_every_problem_is_kept_and_counted():
    with pytest.raises(SpecError) as exc:
        PlanRequest.from_dict({**OK, "dataset": {"examples": 0, "avg_tokens": 0}, "budget_usd": -1})
    assert [f for f, _ in exc.value.problems] == ["dataset.examples", "dataset.avg_tokens", "budget_usd"]
    assert exc.value.field == "dataset.examples" and exc.value.message.endswith("(and 2 more errors)")


def test_fields_set_and_replace():
    req = PlanRequest.from_dict(OK)
    assert req.fields_set == {"model", "dataset"}  # max_seq_len took its default
    edited = req.replace(max_seq_len=4096)
    assert edited.max_seq_len == 4096 and "max_seq_len" in edited.fields_set and req.max_seq_len == 2048
    with pytest.raises(SpecError, match="must be > 0"):  # a copy is validated like a new object
        req.replace(max_seq_len=0)


def test_exclude_defaults_keeps_only_what_differs_at_every_level():
    req = PlanRequest.from_dict({**OK, "goals": ["deep-retask"]})
    assert req.to_dict(exclude_defaults=True) == {"model": "llama-3.1-8b", "dataset": {"examples": 50_000,
                                                                                      "avg_tokens": 1000},
                                                  "goals": ["deep-retask"]}


def test_every_field_has_a_description_and_every_model_is_a_dataclass():
    for name, tp in field_types(PlanRequest).items():
        f = next(f for f in dataclasses.fields(PlanRequest) if f.name == name)
        assert f.metadata.get("description"), name
    assert is_model(DatasetSpec) and not is_model(int)


def test_field_paths_round_trip():
    for loc in (("have", 0, "gpu"), ("dataset", "examples"), ("goals", 3), ()):
        assert field_loc(field_path(loc)) == loc
