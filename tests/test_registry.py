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
