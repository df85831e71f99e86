"""Compare: each panel's own faithfulness in its header (computed in the background, once per
computed layout, one k for all)."""

from __future__ import annotations

import html
import re

import numpy as np
import panel as pn
import pytest
from test_compare import compare

import embproj_panel as ep
from embproj_panel.neighbors import clear_cache

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

LINE = re.compile(r"faithfulness mean \d\.\d\d · trustworthiness \d\.\d\d \(k=(\d+), all 240 rows\)")


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


def test_each_panel_header_shows_its_own_faithfulness():
    view = compare()
    table = view.state.table
    means = []
    for panel in view.panels:
        raw = panel.state.raw_projection
        expected = ep.faithfulness(table, raw, k=10)
        np.testing.assert_array_equal(panel.faithfulness[raw.rows], expected)
        assessment = panel.trust.faith.assessment
        assert assessment.mean == pytest.approx(expected.mean())
        assert LINE.fullmatch(panel.trust.line.object), panel.trust.line.object
        means.append(f"{assessment.mean:.2f}")
        assert f"faithfulness mean {means[-1]}" in panel.trust.line.object
    # The checkpoints differ (panel 3's is unrelated noise): so do their means.
    assert len(set(means)) > 1
    # A comparison's panels do not add a colour column: the colour is one shared choice.
    assert "faithfulness" not in view.state.reference.param.color_by.objects.values()
    # The line is in each panel's header, as text.
    texts = [html.unescape(m.text) for m in pn.panel(view.panels[1]).get_root().select(
        {"type": pn.models.markup.HTML})]
    assert any(LINE.fullmatch(text) for text in texts)


def test_realigning_does_not_recompute_and_one_k_sets_every_panel():
    view = compare()
    p1, p2, _ = view.panels
    job2 = p2.trust.faith._slot.job
    shown2 = p2.state.projection
    p1.state.embedding_columns = ["ckpt_c"]     # panel 2 is re-aligned, not recomputed
    view.wait(60)
    assert p2.state.projection is not shown2
    assert p2.trust.faith._slot.job is job2
    assert p1.trust.faith._slot.job is not None
    view.k_input.value = 5
    view.wait(60)
    for panel in view.panels:
        assert panel.trust.faith.assessment.k == 5
        assert LINE.fullmatch(panel.trust.line.object).group(1) == "5"
