"""The skin-tone evaluation set (benchmarks/eval_set.py): complete, credited, one face each,
and its skin-tone measure tells people (and lightings) apart."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval_set import LIGHTINGS, PEOPLE, eval_portraits, ita_group, skin_tone
from photogen_pipelines.imaging.images import decode_upload

GROUP_ORDER = {"light": 0, "medium": 1, "dark": 2}


@pytest.fixture(scope="module")
def portraits(analyzer):
    return {p.name: p for p in eval_portraits(analyzer)}


@pytest.mark.slow
def test_sixteen_credited_portraits(portraits, analyzer):
    assert len(portraits) == 16
    assert {(p.person, p.lighting) for p in portraits.values()} == {(who, how) for who in PEOPLE for how in LIGHTINGS}
    for p in portraits.values():
        assert "public domain" in p.credit
        assert p.derived == (p.lighting != "as_shot")
        assert ("derived synthetically" in p.credit) == p.derived
    # deterministic: the derived pictures come out byte for byte the same
    again = eval_portraits(analyzer)
    assert [p.data for p in again] == [p.data for p in portraits.values()]


@pytest.mark.slow
def test_each_portrait_has_exactly_one_face(portraits, analyzer):
    for p in portraits.values():
        image = np.asarray(decode_upload(p.data))
        faces = analyzer.detect(image, min_score=0.75)  # the selfie's bar (stages.SELFIE_MIN_FACE_SCORE)
        assert len(faces) == 1, f"{p.name}: {len(faces)} faces"


@pytest.mark.slow
def test_skin_tone_orders_people_and_sees_the_light(portraits, analyzer):
    obama, ardern = portraits["obama-as_shot"], portraits["ardern-as_shot"]
    assert GROUP_ORDER[obama.group] > GROUP_ORDER[ardern.group]
    # measured again here, straight from the pictures
    image = np.asarray(decode_upload(obama.data))
    ita, group = skin_tone(image, analyzer.detect(image)[0])
    assert ita == pytest.approx(obama.ita, abs=0.01) and group == obama.group
    for person in PEOPLE:
        shot, dim = portraits[f"{person}-as_shot"], portraits[f"{person}-dim"]
        assert abs(dim.ita - shot.ita) > 5.0, person  # a darker picture reads darker skin...
        assert dim.group == shot.group  # ...but the person's group stays with the person


def test_ita_group_bounds():
    assert [ita_group(x) for x in (60.0, 41.5, 41.0, 10.0, 9.9, -40.0)] == ["light", "light", "medium", "medium", "dark", "dark"]
