import datetime as dt

import pytest
import yaml

from seco_data.errors import RecipeError
from seco_data.recipe import builtin_recipes, load_recipe, parse_override, recipe_from_dict


def test_shipped_recipes_load_and_match_their_papers():
    names = set(builtin_recipes())
    assert {"demo", "seco-1m", "seco-100k", "ssl4eo-s12"} <= names
    seco = load_recipe("seco-1m")
    assert seco.seasons.count == 5 and seco.seasons.window_days == 15
    gaps = {(a - b).days for a, b in zip(seco.seasons.anchors, seco.seasons.anchors[1:])}
    assert gaps == {84}  # 12 weeks apart
    assert seco.filters.scene_cloud_max == 10 and seco.product == "L2A"
    assert seco.patch == {10: 264, 20: 132, 60: 44} and seco.patch_size_m == 2640
    assert "B10" not in seco.bands and len(seco.bands) == 12
    ssl = load_recipe("ssl4eo-s12")
    assert ssl.product == "L1C" and len(ssl.bands) == 13 and ssl.seasons.window_days == 30
    assert ssl.seasons.anchors[0] == dt.date(2021, 3, 20) and ssl.filters.scene_cloud_max == 20
    assert load_recipe("demo").source == "sim"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"seasons.windw_days": 3}, "seasons.windw_days"),
        ({"filtres": {}}, "filtres"),
        ({"filters.scene_cloud_max": 120}, "filters.scene_cloud_max"),
        ({"filters.patch_cloud_max": -0.1}, "filters.patch_cloud_max"),
        ({"n": 0}, "'n'"),
        ({"n": 1.5}, "'n'"),
        ({"bands": ["B02", "B99"]}, "bands"),
        ({"bands": ["B10"]}, "bands"),  # L2A has no B10
        ({"patch": {10: 264, 20: 100}}, "patch"),
        ({"seasons.window_days": 200}, "seasons.window_days"),
        ({"seasons.anchors": ["2016-01-01"]}, "seasons.anchors"),
        ({"locations.sampler": "aoi"}, "locations.path"),
        ({"locations.land_only": "yes"}, "locations.land_only"),
        ({"source": "planet"}, "source"),
        ({"source_options": {"client_secret": "x"}}, "source_options.client_secret"),
    ],
)
def test_bad_recipes_name_the_key(overrides, key):
    with pytest.raises(RecipeError) as e:
        load_recipe("demo", overrides)
    assert key.strip("'") in str(e.value)
    assert "\n" not in e.value.one_line()


def test_typo_suggests_the_right_key():
    with pytest.raises(RecipeError, match="did you mean 'seasons.window_days'"):
        load_recipe("demo", {"seasons.windw_days": 3})


def test_overrides_and_round_trip(tmp_path):
    r = load_recipe("demo", dict([parse_override("seasons.window_days=20"), parse_override("bands=B2,B3,B4")]))
    assert r.seasons.window_days == 20.0
    assert r.bands == ("B02", "B03", "B04")  # aliases canonicalised
    assert r.band_groups == {10: ("B02", "B03", "B04")}
    # the resolved recipe written as YAML loads back to the same recipe
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    again = load_recipe(p)
    assert again == r and again.fingerprint() == r.fingerprint()
    # n does not change the fingerprint (a larger n grows the same dataset); a filter does
    assert load_recipe(p, {"n": 5}).fingerprint() == r.fingerprint()
    assert load_recipe(p, {"filters.coverage_min": 0.9}).fingerprint() != r.fingerprint()


def test_unreadable_recipe_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(lst)
    with pytest.raises(RecipeError, match="no recipe named"):
        load_recipe("no-such-recipe")
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_override("n")
    assert recipe_from_dict({"n": "7"}).n == 7
