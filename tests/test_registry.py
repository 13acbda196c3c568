import pytest

from sparsetorch._registry import Registry


def test_named_and_parsed_entries():
    reg: Registry = Registry("pattern")
    reg.register("unstructured")(lambda: "u")
    reg.register_pattern(r"(\d+):(\d+)", "N:M")(lambda n, m: ("nm", n, m))
    assert reg.build("unstructured") == "u"
    assert reg.build(" 2:4 ") == ("nm", 2, 4)
    assert "2:4" in reg and "x" not in reg
    obj = object()
    assert reg.build(obj) is obj
    with pytest.raises(ValueError, match=r"unknown pattern 'blob'; known: unstructured, N:M"):
        reg.build("blob")
    with pytest.raises(ValueError, match="twice"):
        reg.register("unstructured")(lambda: None)


def test_a_registration_made_in_a_test_is_gone_after_it():
    from sparsetorch.criteria import CRITERIA

    assert "only-in-this-test" not in CRITERIA
    CRITERIA.register("only-in-this-test")(object)  # undone by tests/conftest.py
    assert CRITERIA in Registry.instances() and "only-in-this-test" in CRITERIA


def test_and_not_seen_by_the_next_one():
    from sparsetorch.criteria import CRITERIA

    assert "only-in-this-test" not in CRITERIA
