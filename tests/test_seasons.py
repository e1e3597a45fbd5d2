import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from seco_data.recipe import load_recipe
from seco_data.sample.seasons import location_shift, windows


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), loc=st.integers(0, 10**7))
def test_windows_follow_the_recipe(seed, loc):
    spec = load_recipe("seco-1m").seasons
    ws = windows(spec, seed, loc)
    assert [w.season for w in ws] == list(range(spec.count))
    shift = location_shift(seed, loc, spec.shift_days)
    assert 0 <= shift < spec.shift_days
    for w, anchor in zip(ws, spec.anchors):
        assert w.end - w.start == dt.timedelta(days=spec.window_days)
        assert w.centre == dt.datetime.combine(anchor, dt.time(12), tzinfo=dt.timezone.utc) - dt.timedelta(days=shift)
        assert w.contains(w.start) and not w.contains(w.end)
    # the shift moves every window together: spacing between seasons is preserved
    assert [(a.centre - b.centre) for a, b in zip(ws, ws[1:])] == [
        dt.datetime.combine(a, dt.time()) - dt.datetime.combine(b, dt.time()) for a, b in zip(spec.anchors, spec.anchors[1:])
    ]
    assert windows(spec, seed, loc) == ws  # pure function of (seed, location)


def test_shifts_cover_the_year():
    spec = load_recipe("demo").seasons
    shifts = [location_shift(0, i, spec.shift_days) for i in range(3000)]
    assert len(set(shifts)) > 300
    assert min(shifts) < 15 and max(shifts) > 350
    # different seeds give different schedules for the same location
    assert [location_shift(1, i, 365) for i in range(50)] != shifts[:50]
