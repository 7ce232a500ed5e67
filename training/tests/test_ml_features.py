import pytest

from training.ml.features import FeatureKey


def test_it_parses_and_prints_a_feature_key():
    key = FeatureKey.parse("lite0+lite2")
    assert (
        key.parts == ("lite0", "lite2")
        and str(key) == "lite0+lite2"
        and key.combined
        and list(key) == ["lite0", "lite2"]
    )
    assert FeatureKey.of(["lite2"]) == FeatureKey.parse("lite2") and not FeatureKey.parse("lite2").combined


@pytest.mark.parametrize("bad", ["", "+", "lite0+", "lite0+lite0", "Lite0", "lite 0", "a+b+"])
def test_it_refuses_what_is_not_a_feature_key(bad):
    with pytest.raises(ValueError):
        FeatureKey.parse(bad)
