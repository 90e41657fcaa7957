"""The review queue and box corrections (images.review, images.corrections) and the fusion rule (detect.fusion)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bioscan_rebuild.core.errors import InputError
from bioscan_rebuild.detect.base import Detection
from bioscan_rebuild.detect.evaluate import iou
from bioscan_rebuild.detect.fusion import (
    CONFIDENCE_FEATURES,
    CONFIDENCE_L2,
    CONFIDENCE_MIN_PHOTOS,
    SPLIT_MIN_PHOTOS,
    FusionRule,
    confidence_features,
    decide,
    fit_confidence_model,
    fit_confidence_splits,
    fit_rule,
    fuse,
    mean_box,
    model_confidence,
    score_rule,
)
from bioscan_rebuild.images.corrections import (
    SUPERSEDED_BY_REFUSED,
    by_record,
    load_box_corrections,
    outcomes,
    parse_box,
    read_box_corrections,
)
from bioscan_rebuild.images.process import review_reasons


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,0,1,1", (0, 0, 1, 1)),  # the smallest box: one pixel
        (" 10, 20 ,30,40 ", (10, 20, 30, 40)),
        ("empty", None),
        (" EMPTY ", None),
        ("5,5,5,9", False),  # x1 == x0: no width
        ("5,5,9,5", False),  # y1 == y0: no height
        ("5,5,3,3", False),  # ends before starts
        ("-1,0,2,2", (-1, 0, 2, 2)),  # past the left edge: the image stage clips it, as past the right edge
        ("-3,0,-1,2", (-3, 0, -1, 2)),  # wholly left of the photo: the image stage finds nothing of it inside
        ("1,2,3", False),
        ("1,2,3,4,5", False),
        ("1.5,2,3,4", False),
        ("4\u00b2,2,9,9", False),  # a superscript two is a digit to str.isdigit, not to int()
        ("", False),
        ("none", False),
    ],
)
def test_a_box_is_four_ordered_pixel_ints_or_empty(text, expected):
    assert parse_box(text) == expected


def test_corrections_file_comments_later_rows_and_invalid_rows(tmp_path):
    path = tmp_path / "corr.tsv"
    path.write_text(
        "# a comment line\n"
        "processid\tbox\treason\tsource\n"
        "# A-1\t1,1,2,2\tcommented out\treview\n"
        "A-1\t0,0,10,10\tfirst\tme\n"
        "A-1\t5,5,20,20\tsecond thought\tme\n"
        "A-1\t1,2\ta typo\tme\n"
        "B-2\tempty\tno insect\tme\n"
        "C-3\t9,9,1,1\tbackwards\tme\n"
    )
    valid = load_box_corrections(path)
    assert sorted(valid) == ["B-2"]  # C-3's box is invalid; the commented line is no row
    # the last row is the maintainer's word: A-1's is no box, so it is refused and the record keeps the detector's
    # box (as after a last box outside the photo; an earlier box was applied: reviewer boxrt)
    assert valid["B-2"].box is None
    table = read_box_corrections(path)
    result = outcomes(table, applied={"B-2"}, known={"A-1", "B-2", "C-3"})
    assert result["outcome"].tolist() == ["superseded", "superseded", "invalid_value", "applied", "invalid_value"]
    # which invalid value: one word each (the row said invalid_value alone, whatever was wrong)
    assert result["detail"].str.startswith("not a box: give x0,y0,x1,y1").tolist() == [False, False, True, False, True]
    assert result["detail"].tolist()[:2] == [SUPERSEDED_BY_REFUSED] * 2
    result = outcomes(table, applied={"B-2"}, known={"B-2", "C-3"})  # A-1 has no record with a photo
    assert result["outcome"].tolist() == ["unknown_processid"] * 3 + ["applied", "invalid_value"]


def test_an_image_sha256_that_is_no_sha256_or_not_the_photo_names_an_edited_cell():
    """A cut or mistyped ``image_sha256`` was taken for a redelivery (``photo_changed``: "a redelivery replaced it"),
    sending the maintainer after a photo that never changed. A cell that is no sha256 now says so; one that is a
    sha256 but not the record's photo names the edit as well as the redelivery."""
    photo = "ab" * 32
    table = pd.DataFrame(
        [
            ("A-1", "0,0,10,10", "cut cell", "me", photo[:20]),
            ("B-2", "0,0,10,10", "wrong photo", "me", "0" * 64),
            ("C-3", "0,0,10,10", "right photo", "me", photo.upper()),
        ],
        columns=["processid", "box", "reason", "source", "image_sha256"],
    )
    result = outcomes(table, applied={"C-3"}, known={"A-1", "B-2", "C-3"}, changed={"A-1", "B-2"})
    assert result["outcome"].tolist() == ["photo_changed", "photo_changed", "applied"]
    assert result["detail"][0].startswith("image_sha256 is not a sha256 (64 hex digits), so it names no photo")
    assert "or the cell was edited" in result["detail"][1]


def test_a_row_replaced_by_a_refused_row_says_the_record_kept_the_detectors_box(tmp_path):
    """A later box outside the photo (or drawn on a replaced photo) replaced an earlier good one: the record kept the
    detector's box, and the earlier row said "a later row for this record replaces it", as if it were applied."""
    path = tmp_path / "corr.tsv"
    path.write_text(
        "processid\tbox\treason\tsource\n"
        "A-1\t400,270,540,410\tgood box\tme\n"
        "A-1\t3000,3000,3100,3100\toutside\tme\n"
        "B-2\t400,270,540,410\tgood box\tme\n"
        "B-2\t410,280,530,400\tbetter\tme\n"
    )
    result = outcomes(read_box_corrections(path), applied={"B-2"}, known={"A-1", "B-2"})
    assert result["outcome"].tolist() == ["superseded", "invalid_value", "superseded", "applied"]
    assert result["detail"][0] == SUPERSEDED_BY_REFUSED and "fix or delete that row" in result["detail"][0]
    assert result["detail"][2] == "a later row for this record replaces it"


def test_a_row_replaced_by_a_row_that_is_no_box_leaves_the_detectors_box(tmp_path):
    """A good box, then a later row for the record that is no box (``emtpy``): the earlier box was applied, its
    detail blank, though the maintainer's last word was another answer (reviewer boxrt). As for a later box outside
    the photo, the last row is the maintainer's word: refused, so the record keeps the detector's box."""
    path = tmp_path / "corr.tsv"
    path.write_text(
        "processid\tbox\treason\tsource\n"
        "A-1\t100,100,200,200\tgood box\tme\n"
        "A-1\temtpy\ttypo\tme\n"
        "B-2\temtpy\ttypo\tme\n"
        "B-2\t100,100,200,200\tfixed\tme\n"
    )
    table = read_box_corrections(path)
    assert sorted(by_record(table)) == ["B-2"]
    result = outcomes(table, applied={"B-2"}, known={"A-1", "B-2"})
    assert result["outcome"].tolist() == ["superseded", "invalid_value", "invalid_value", "applied"]
    assert result["detail"][0] == SUPERSEDED_BY_REFUSED


def test_the_outcome_table_keeps_the_maintainers_own_columns(tmp_path):
    """The outcome table, shipped as the release's ``metadata/box_corrections.tsv``, dropped a maintainer's note
    column ("see mail of 3 May") and the template's ``offered_box``: a released row could be traced to the answer
    only by its processid and order (reviewer boxrt). An earlier run's outcome table given as the answers gets this
    run's outcomes, not two of each."""
    path = tmp_path / "corr.tsv"
    path.write_text(
        "processid\tbox\treason\tsource\tnote\toffered_box\tmy note\n"
        "A-1\t100,100,200,200\tgood box\tme\tsee mail of 3 May\t90,90,210,210\tx\n"
        "B-2\temtpy\ttypo\tme\t\t1,1,5,5\ty\n"
    )
    result = outcomes(read_box_corrections(path), applied={"A-1"}, known={"A-1", "B-2"})
    assert list(result.columns) == [
        "processid", "box", "reason", "source", "image_sha256", "note", "offered_box", "my note", "outcome", "detail"
    ]  # fmt: skip
    assert result["note"].tolist() == ["see mail of 3 May", ""] and result["my note"].tolist() == ["x", "y"]
    assert result["outcome"].tolist() == ["applied", "invalid_value"]
    again = tmp_path / "again.tsv"
    result.to_csv(again, sep="\t", index=False)
    result = outcomes(read_box_corrections(again), applied=set(), known={"A-1", "B-2"})
    assert list(result.columns).count("outcome") == 1 and result["outcome"].tolist()[1] == "invalid_value"
    # a maintainer's own column named as the outcome table's (its text was lost), a name given twice (renamed
    # note.1, or each column written twice): refused by name (reviewer diffl)
    from bioscan_rebuild.core.errors import InputError

    for header, says in (
        ("processid\tbox\treason\tsource\tdetail", "a column named 'detail'"),
        ("processid\tbox\treason\tsource\tnote\tnote", "column name(s) 'note' more than once"),
        ('processid\tbox\treason\tsource\tnote\t"note"', "column name(s) 'note' more than once"),
    ):
        path.write_text(header + "\nA-1\t100,100,200,200\tgood box\tme\ta" + ("\tb" if "note" in header else "") + "\n")
        with pytest.raises(InputError, match=re.escape(says)):
            read_box_corrections(path)


def test_a_box_past_the_left_or_top_edge_is_a_box_as_one_past_the_right_or_bottom():
    """``-5,10,100,100`` was `invalid_value` "not a box: give x0,y0,x1,y1 in whole pixels with x1 > x0", which it
    is, while a box past the right edge was clipped and applied."""
    assert parse_box("-5,10,100,100") == (-5, 10, 100, 100)
    assert parse_box(" -5 , -1 ,100,100") == (-5, -1, 100, 100)
    assert parse_box("5,10,-100,100") is False  # x1 > x0 still holds
    assert parse_box("--5,10,100,100") is False and parse_box("-,10,100,100") is False


def test_corrections_file_as_spreadsheets_and_editors_write_it(tmp_path):
    """A byte-order mark, Windows line ends, a tab after the last column, a '#' inside a reason: all read as
    meant; a file of comments only (or nothing) holds no corrections."""
    path = tmp_path / "corr.tsv"
    path.write_bytes(
        "\ufeffprocessid\tbox\treason\tsource\r\n"
        "A-1\t1,2,30,40\tleg #2 cut off\tme\t\r\n"
        "  # B-2\tempty\tindented comment\tme\r\n"
        "C-3\tempty\tno insect\tme\t\r\n".encode()
    )
    table = read_box_corrections(path)
    assert table.to_dict("records") == [
        {"processid": "A-1", "box": "1,2,30,40", "reason": "leg #2 cut off", "source": "me", "image_sha256": ""},
        {"processid": "C-3", "box": "empty", "reason": "no insect", "source": "me", "image_sha256": ""},
    ]
    assert sorted(load_box_corrections(path)) == ["A-1", "C-3"]
    for text in ("# nothing yet\n# processid\tbox\n", ""):
        path.write_text(text)
        assert read_box_corrections(path).empty and load_box_corrections(path) == {}
    path.write_text("processid\tbox\treason\tsource\nA-1\t1,2,30,40\tr\ts\nB-2\tempty\tr\ts\tmore\n")
    with pytest.raises(InputError, match="line 3 has more fields than the header"):
        read_box_corrections(path)


def test_outcomes_match_processids_as_records_do_and_name_unusable_photos():
    table = pd.DataFrame(
        [("a-1", "1,2,3,4", "", ""), ("B-2", "empty", "", ""), ("C-3", "1,2,3,4", "", "")],
        columns=["processid", "box", "reason", "source"],
    )
    result = outcomes(table, applied={"A-1"}, known={"A-1", "B-2", "C-3"}, unusable={"B-2"})
    assert result["outcome"].tolist() == ["applied", "photo_unusable", "invalid_value"]
    assert result["detail"][2].startswith("the box lies outside the photo")  # a box, but not on this photo
    result = outcomes(table, applied={"A-1", "C-3"}, known={"A-1", "B-2", "C-3"}, clipped={"C-3"})
    assert result["outcome"].tolist() == ["applied", "invalid_value", "clipped"]
    assert result["detail"][2].startswith("the box reached past the photo")
    assert sorted(load_box_corrections(None)) == []


def test_quotes_in_a_corrections_file_never_join_rows(tmp_path):
    path = tmp_path / "corr.tsv"
    path.write_text(
        'processid\tbox\treason\tsource\nA-1\tempty\t"leg\tme\nB-2\tempty\tx\tme\n'
        'C-3\tempty\tcut"\tme\n"D-4"\t"1,2,3,4"\t"a ""big"" one"\tme\n'
    )
    table = read_box_corrections(path)
    assert table["processid"].tolist() == ["A-1", "B-2", "C-3", "D-4"]
    assert table["reason"].tolist() == ['"leg', "x", 'cut"', 'a "big" one']  # a spreadsheet's quoting undone
    assert load_box_corrections(path)["D-4"].box == (1, 2, 3, 4)
    path.write_text("processid\tbox\treason\tsource\nA-1\tempty\tform\x0cfeed \u2028 separator\tme\n")
    assert read_box_corrections(path)["reason"].tolist() == ["form\x0cfeed \u2028 separator"]


@pytest.mark.parametrize(
    "body, phrase",
    [
        (b"A-1\tempty\treport 12\rsee mail\tme\n", "line 2 holds a carriage return inside a value"),
        (
            b'A-1\tempty\tx\t"report 13\nsee mail"\nB-2\tempty\tx\tme\n',
            "lines 2-3: a cell in quotes holds a line break",
        ),
    ],
)
def test_a_line_break_inside_a_cell_is_refused_naming_its_line(tmp_path, body, phrase):
    """pandas ended a line at a lone CR, and a spreadsheet's quoted multi-line cell was split at its line break:
    the value was cut short and its tail read as a row of its own (processid "see mail"), without a word."""
    path = tmp_path / "corr.tsv"
    path.write_bytes(b"processid\tbox\treason\tsource\n" + body)
    with pytest.raises(InputError, match=phrase):
        read_box_corrections(path)


def test_a_template_saved_by_a_spreadsheet_reads_and_is_written_again(tmp_path):
    """Excel quotes a cell holding a comma, in tab-delimited saves too: two of the template's notes then started
    with `"#`, the first was taken for the header, and the run and `review` both stopped blaming the real header
    ("line 4 has more fields than the header")."""
    from bioscan_rebuild.images.review import TEMPLATE_NOTES, _earlier_template

    def excel(line: str) -> str:
        return "\t".join(f'"{cell}"' if "," in cell else cell for cell in line.split("\t"))

    lines = [*TEMPLATE_NOTES, "processid\tbox\treason\tsource\timage_sha256", "A-1\t1,2,30,40\tleg\tme\t"]
    lines.append("# B-2\t5,5,60,60\tlow_confidence\treview\tab12")
    template = tmp_path / "q" / "box_corrections.tsv"
    template.parent.mkdir()
    template.write_bytes(("\r\n".join(map(excel, lines)) + "\r\n").encode())
    assert template.read_text().startswith("# Box corrections") and '\n"# box: x0,y0' in template.read_text()
    table = read_box_corrections(template)
    assert table[["processid", "box"]].to_dict("records") == [{"processid": "A-1", "box": "1,2,30,40"}]
    kept, columns, queue = _earlier_template(template)
    assert columns == ["processid", "box", "reason", "source", "image_sha256", "offered_box"]
    # the notes are not kept twice
    assert kept == [excel(lines[3]) + "\toffered_box", excel(lines[4])] and list(queue) == ["B-2"]
    # LibreOffice's "quote all text cells": a queue line is still one (it was kept for good, beside a fresh one)
    quoted = "\t".join(f'"{cell}"' for cell in ["# B-2", "5,5,60,60", "low_confidence", "review", "ab12"])
    template.write_text("processid\tbox\treason\tsource\timage_sha256\n" + quoted + "\n")
    kept, columns, queue = _earlier_template(template)
    assert list(queue) == ["B-2"] and kept == ["processid\tbox\treason\tsource\timage_sha256\toffered_box"]


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        ("processid\tbox\treason\tsource\nA-1\tempty\tFlügel\tme\n".encode("utf-16"), "saved as UTF-16"),
        (
            "processid\tbox\treason\tsource\nA-1\tempty\tFlügel abgeschnitten\tme\n".encode("cp1252"),
            r"line 2 is not UTF-8 \(byte b'\\xfc'; Windows-1252 or Latin-1\?\): save it as UTF-8",
        ),
        (  # after a byte-order mark: the line and byte were those 3 bytes earlier
            b"\xef\xbb\xbfprocessid\tbox\treason\tsource\nA-1\tempty\tr\ts\nB\xe9\tempty\tr\ts\n",
            r"line 3 is not UTF-8 \(byte b'\\xe9'",
        ),
    ],
    ids=["utf16", "cp1252", "bom"],
)
def test_a_table_in_another_encoding_says_which_and_to_save_it_as_utf8(tmp_path, data, phrase):
    """A spreadsheet's "Unicode Text" (UTF-16) or "Text (Tab delimited)" (Windows-1252) save gave Python's bare
    codec error with a byte offset, naming neither line nor encoding."""
    path = tmp_path / "corr.tsv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=phrase):
        read_box_corrections(path)


def test_a_corrections_file_without_its_columns_is_an_input_error(tmp_path):
    path = tmp_path / "corr.tsv"
    path.write_text("processid\tbbox\nA-1\t1,1,2,2\n")
    with pytest.raises(InputError, match=r"corr\.tsv: missing column\(s\) box, reason, source \(the box corrections"):
        load_box_corrections(path)
    assert load_box_corrections(None) == {}


def test_review_reasons_from_the_detector_and_the_box():
    # 100x80 photo: a box touching x = 0 is on the rim; one 1 px inside is not.
    edge = Detection("ok", (0, 10, 50, 50), review=("backends_disagree",))
    assert review_reasons(edge, edge.box, 100, 80) == ["backends_disagree", "box_on_rim"]
    inside = Detection("multiple_candidates", (1, 1, 99, 79))
    assert review_reasons(inside, inside.box, 100, 80) == ["several_specimens"]
    bottom = Detection("ok", (1, 1, 99, 80))  # y1 == height: touches the bottom
    assert review_reasons(bottom, bottom.box, 100, 80) == ["box_on_rim"]
    empty = Detection("no_object", None, review=("low_confidence",))
    assert review_reasons(empty, None, 100, 80) == ["low_confidence"]


def test_a_box_without_one_organism_pixel_is_flagged():
    """The onnx backend boxes an all-black frame, whose segmentation finds no organism pixel: it was released as a
    specimen of 0 pixels, flagged only as a grey photo on the rim (reviewer degen)."""
    import numpy as np

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.core.pilsafe import encode_jpeg
    from bioscan_rebuild.detect.registry import make_detector, make_segmenter
    from bioscan_rebuild.images.process import process_photos

    inside = Detection("ok", (10, 10, 50, 50))
    assert review_reasons(inside, inside.box, 100, 80, pixels=0) == ["no_organism_pixels"]
    assert review_reasons(inside, inside.box, 100, 80, pixels=1) == []
    assert review_reasons(Detection("no_object", None), None, 100, 80, pixels=0) == []
    detector = make_detector("onnx")
    black = encode_jpeg(np.zeros((768, 1024, 3), np.uint8), 90)
    ((result, _),) = process_photos([black], detector, ImageParams(), make_segmenter("onnx", detector))
    assert result.box is not None and result.image_measurement_value == 0  # what the shipped model does
    assert "no_organism_pixels" in result.review


RULE = FusionRule(
    empty_learned_max=0.3,
    empty_classical_max=80.0,
    trust_learned=0.6,
    agree_box="classical",
    review_below=0.85,
    rim_margin=2,
    confidence={
        "agree": 0.95,
        "learned_chosen": 0.8,
        "classical_chosen": 0.7,
        "learned_only": 0.6,
        "classical_only": 0.9,
        "empty": 0.9,
    },
)
C_BOX, L_BOX, FAR_BOX = (100, 100, 300, 260), (110, 105, 310, 270), (500, 400, 600, 500)


def _c(box, score=120.0, status="ok"):
    return Detection(status if box else "no_object", box, pixel_count=999 if box else None, score=score if box else 0)


def _l(box, score):
    return Detection("ok" if box else "no_object", box, score=score if box else 0.0)


@pytest.mark.parametrize(
    ("classical", "learned", "situation", "source"),
    [
        (_c(None), _l(None, 0), "empty", "none"),
        (_c(C_BOX, 80.0), _l(L_BOX, 0.29), "empty", "none"),  # both weak: 80 <= 80 and 0.29 < 0.3
        (_c(C_BOX, 80.1), _l(None, 0), "classical_only", "classical"),  # classical just above its bar
        (_c(None), _l(L_BOX, 0.3), "learned_only", "learned"),  # learned exactly at its bar is not empty
        (_c(C_BOX), _l(L_BOX, 0.9), "agree", "classical"),  # IoU = 190*155 / (32000 + 33000 - 29450) ~ 0.83
        (_c(C_BOX), _l(FAR_BOX, 0.6), "learned_chosen", "learned"),  # trusted at exactly 0.6
        (_c(C_BOX), _l(FAR_BOX, 0.59), "classical_chosen", "classical"),
    ],
)
def test_the_fusion_rule_decides_by_its_thresholds(classical, learned, situation, source):
    assert decide(classical, learned, RULE) == (situation, source)


def test_fused_detection_carries_confidence_reasons_and_the_chosen_mask():
    shape = (768, 1024)
    agreed = fuse(_c(C_BOX), _l(L_BOX, 0.9), RULE, shape)
    assert (agreed.box, agreed.score, agreed.review, agreed.pixel_count) == (C_BOX, 0.95, (), 999)
    chosen = fuse(_c(C_BOX), _l(FAR_BOX, 0.7), RULE, shape)
    # learned chosen: confidence 0.8 < 0.85, boxes disagree; its box has no mask (the stage segments it)
    assert (chosen.box, chosen.score, chosen.pixel_count) == (FAR_BOX, 0.8, None)
    assert chosen.review == ("low_confidence", "backends_disagree")
    rim = fuse(_c((0, 300, 90, 400)), _l(None, 0), RULE, shape)  # x0 = 0 <= rim_margin
    assert rim.review == ("backends_disagree", "box_on_rim") and rim.score == 0.9
    rim = fuse(_c((3, 300, 1021, 765)), _l(None, 0), RULE, shape)  # 3 px from every border: not on the rim
    assert "box_on_rim" not in rim.review
    empty = fuse(_c(None), _l(None, 0), RULE, shape)
    assert (empty.status, empty.box, empty.score, empty.review) == ("no_object", None, 0.9, ())


def test_either_detector_seeing_several_objects_flags_several_specimens():
    """Only the chosen detector's status counted: with two specimens, the learned box chosen over a classical
    detector that saw both was a plain ``ok`` (reviewer degen); and the other way round."""
    shape = (768, 1024)
    learned_chosen = fuse(_c(C_BOX, status="multiple_candidates"), _l(FAR_BOX, 0.9), RULE, shape)
    assert learned_chosen.box == FAR_BOX and "several_specimens" in learned_chosen.review
    learned_sees_two = Detection("multiple_candidates", L_BOX, score=0.9)
    agreed = fuse(_c(C_BOX), learned_sees_two, RULE, shape)
    assert agreed.box == C_BOX and "several_specimens" in agreed.review
    assert "several_specimens" not in fuse(_c(C_BOX), _l(L_BOX, 0.9), RULE, shape).review
    # an empty well: no box, no several_specimens
    assert "several_specimens" not in fuse(_c(None), _l(None, 0), RULE, shape).review


def test_fit_rule_finds_the_thresholds_that_separate_the_cases():
    """A synthetic world: the learned box is right when its score >= 0.55, the classical box when the learned
    score is lower; empty wells have learned scores < 0.2 and weak classical peaks (< 50). The fit must get
    every photo right, and each situation's confidence is (right + 1) / (photos + 2)."""
    rng = np.random.default_rng(0)
    truth = (100, 100, 200, 200)
    wrong = (600, 500, 700, 600)
    samples = []
    for _ in range(30):  # learned right, classical on a fibre
        samples.append((_c(wrong, 150.0), _l(truth, float(rng.uniform(0.55, 0.95))), truth))
    for _ in range(20):  # learned wrong (weak), classical right
        samples.append((_c(truth, 150.0), _l(wrong, float(rng.uniform(0.25, 0.5))), truth))
    for _ in range(10):  # empty wells: faint debris at most
        samples.append((_c(wrong, float(rng.uniform(20, 49))), _l(wrong, float(rng.uniform(0.0, 0.19))), None))
    rule, result = fit_rule(samples)
    assert result["specimens_right"] == 1.0 and result["empty_right"] == 1.0
    assert score_rule(rule, samples)["specimens_right"] == 1.0
    assert rule.confidence["learned_chosen"] == round(31 / 32, 4)
    assert rule.confidence["classical_chosen"] == round(21 / 22, 4)
    assert rule.confidence["empty"] == round(11 / 12, 4)
    assert rule.confidence["agree"] == 0.5  # no photo: (0 + 1) / (0 + 2)
    assert rule.agree_iou == 0.5  # no photo needs another agreement bar: the usual one
    assert rule.confidence_splits == {}  # no wrong photo: nothing to split off


def test_agreeing_boxes_can_be_averaged():
    """agree_box "mean": each side half-way between the two boxes; the organism's pixels stay the classical
    mask's. The fit takes it where the two agree but each is wrong half of the time and their mean always right."""
    assert mean_box((100, 100, 300, 260), (110, 105, 310, 270)) == (105, 102, 305, 265)  # 102.5 -> 102 (even)
    averaged = fuse(_c(C_BOX), _l(L_BOX, 0.9), replace(RULE, agree_box="mean"), (768, 1024))
    assert (averaged.box, averaged.score, averaged.pixel_count) == ((105, 102, 305, 265), 0.95, 999)
    truth = (100, 100, 200, 200)
    off, near = (81, 81, 181, 181), (95, 95, 195, 195)  # IoU with the truth 0.49 and 0.82; with each other 0.59
    assert iou(off, truth) < 0.5 <= iou(near, truth) and iou(off, near) >= 0.5 <= iou(mean_box(off, near), truth)
    samples = [(_c(off, 150.0), _l(near, 0.8), truth)] * 10 + [(_c(near, 150.0), _l(off, 0.8), truth)] * 10
    samples += [(_c(None), _l(None, 0.0), None)] * 5
    rule, result = fit_rule(samples)
    assert (rule.agree_box, result["specimens_right"], result["empty_right"]) == ("mean", 1.0, 1.0)
    assert decide(samples[0][0], samples[0][1], rule) == ("agree", "mean")


def test_the_fit_lowers_the_agreement_bar_where_half_overlapping_boxes_average_right():
    """A tall classical box and a wide learned one (the body with and without the wings, say) overlap at IoU
    0.38: each alone misses the hand-drawn box, their mean hits it. The fit lowers agree_iou to the highest
    candidate at which they agree (0.35) and averages; at the usual 0.5 they disagree."""
    truth = (100, 100, 200, 200)
    tall, wide = (90, 90, 150, 180), (90, 90, 240, 170)
    assert iou(tall, truth) < 0.5 and iou(wide, truth) < 0.5 <= iou(mean_box(tall, wide), truth)
    assert 0.35 <= iou(tall, wide) < 0.4
    samples = [(_c(tall, 150.0), _l(wide, 0.8), truth)] * 10 + [(_c(None), _l(None, 0.0), None)] * 5
    rule, result = fit_rule(samples)
    assert (rule.agree_iou, rule.agree_box) == (0.35, "mean")
    assert (result["specimens_right"], result["empty_right"]) == (1.0, 1.0)
    assert decide(_c(tall, 150.0), _l(wide, 0.8), rule) == ("agree", "mean")
    usual = replace(rule, agree_iou=0.5)
    assert decide(_c(tall, 150.0), _l(wide, 0.8), usual)[0] != "agree"
    assert "backends_disagree" in fuse(_c(tall, 150.0), _l(wide, 0.8), usual, (768, 1024)).review
    assert "backends_disagree" not in fuse(_c(tall, 150.0), _l(wide, 0.8), rule, (768, 1024)).review


def test_fitting_on_no_photo_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one photo"):
        fit_rule([])


def test_a_rule_fitted_before_agree_iou_agrees_at_one_half(tmp_path):
    rule_json = {"rule": {k: v for k, v in RULE.as_dict().items() if k != "agree_iou"}}
    (tmp_path / "fusion.json").write_text(json.dumps(rule_json))
    assert FusionRule.load(tmp_path / "fusion.json").agree_iou == 0.5


def test_the_learned_models_bar_where_the_classical_detector_found_nothing_is_its_own():
    """Debris the learned model scores 0.45 in wells where the classical detector sees nothing, but real
    specimens it scores 0.4 beside a faint classical box: one bar cannot tell both apart, two can."""
    truth = (100, 100, 200, 200)
    samples = [(_c(None), _l(FAR_BOX, 0.45), None)] * 8  # debris in an empty well, classical: nothing
    samples += [(_c(None), _l(truth, 0.7), truth)] * 8  # a specimen only the learned model finds
    samples += [(_c(FAR_BOX, 50.0), _l(FAR_BOX, 0.1), None)] * 8  # faint debris both see
    samples += [(_c(truth, 40.0), _l(truth, 0.4), truth)] * 8  # a faint specimen both see
    rule, result = fit_rule(samples)
    assert (result["specimens_right"], result["empty_right"]) == (1.0, 1.0)
    assert rule.empty_learned_max <= 0.4 < 0.45 < rule.empty_learned_only_max <= 0.7
    single = replace(rule, empty_learned_only_max=None)  # one bar for both: some photos must be wrong
    assert min(score_rule(single, samples)["specimens_right"], score_rule(single, samples)["empty_right"]) < 1.0
    assert decide(_c(None), _l(FAR_BOX, 0.45), rule) == ("empty", "none")
    assert decide(_c(None), _l(truth, 0.7), rule) == ("learned_only", "learned")
    assert decide(_c(None), _l(None, 0.0), replace(rule, empty_learned_only_max=0.0)) == ("empty", "none")


def test_the_fit_can_refuse_every_box_the_learned_model_finds_alone():
    """The bars include one above every learned score: where each box the learned model finds alone is debris,
    the fit must be able to call all those wells empty (a bar at the top score would keep that box)."""
    samples = [(_c(None), _l(FAR_BOX, 0.9), None)] * 3 + [(_c(C_BOX), _l(C_BOX, 0.4), C_BOX)] * 3
    rule, result = fit_rule(samples)
    assert (result["specimens_right"], result["empty_right"]) == (1.0, 1.0)
    assert rule.empty_learned_only_max > 0.9


def _features(agree_iou=0.0, learned_score=0.0, classical_score=0.0):
    return {"agree_iou": agree_iou, "learned_score": learned_score, "classical_score": classical_score}


def test_a_situation_s_confidence_is_split_where_its_photos_differ_clearly():
    """Agreeing boxes that barely overlap are wrong half of the time, close ones never: the agree confidence is
    split at the first agreement-IoU threshold that separates them. A situation whose mistakes follow no
    measurement, or a split that would leave too few photos on one side, keeps one confidence."""
    outcomes = [("agree", _features(agree_iou=0.45, learned_score=0.6), i % 2 == 0) for i in range(20)]
    outcomes += [("agree", _features(agree_iou=0.92, learned_score=0.6), True) for _ in range(40)]
    outcomes += [("empty", _features(learned_score=0.01 * (i % 7)), i % 3 != 0) for i in range(30)]
    few = SPLIT_MIN_PHOTOS - 1
    outcomes += [("learned_chosen", _features(learned_score=0.2), False) for _ in range(few)]
    outcomes += [("learned_chosen", _features(learned_score=0.9), True) for _ in range(30)]
    splits = fit_confidence_splits(outcomes)
    assert splits == {
        "agree": {
            "feature": "agree_iou",
            "at": 0.5,
            "below": round(11 / 22, 4),
            "above": round(41 / 42, 4),
            "photos": [20, 40],
        }
    }
    # the same mistakes, now with enough photos on the low side: learned_chosen is split too
    more = outcomes + [("learned_chosen", _features(learned_score=0.2), False)]
    assert fit_confidence_splits(more)["learned_chosen"]["photos"] == [SPLIT_MIN_PHOTOS, 30]


def test_mistakes_that_follow_no_measurement_rarely_get_a_split():
    """The test is corrected for the thresholds it tries: on photos whose right answers are drawn independently
    of every measurement, few situations get a split (uncorrected, about a third did)."""
    rng = np.random.default_rng(7)
    split = 0
    for _ in range(100):
        outcomes = [
            ("agree", _features(*rng.uniform([0.4, 0.0, 0.0], [1.0, 1.0, 200.0])), bool(rng.random() < 0.88))
            for _ in range(150)
        ]
        split += "agree" in fit_confidence_splits(outcomes)
    assert split <= 10


def test_fused_detection_takes_the_confidence_of_its_side_of_the_split():
    split = {"agree": {"feature": "agree_iou", "at": 0.9, "below": 0.7, "above": 0.97, "photos": [10, 50]}}
    rule = replace(RULE, confidence_splits=split)
    loose = fuse(_c(C_BOX), _l(L_BOX, 0.9), rule, (768, 1024))  # IoU ~0.83 < 0.9
    assert (loose.score, loose.review) == (0.7, ("low_confidence",))
    close = fuse(_c(C_BOX), _l(C_BOX, 0.9), rule, (768, 1024))
    assert (close.score, close.review) == (0.97, ())
    # the agree situation's plain confidence is no longer given to any photo
    assert rule.confidence_levels() == {v for k, v in RULE.confidence.items() if k != "agree"} | {0.7, 0.97}
    # a rule without splits reads and writes as one from before they existed (the same store keys)
    assert "confidence_splits" not in RULE.as_dict() and FusionRule(**RULE.as_dict()) == RULE
    assert FusionRule(**rule.as_dict()) == rule
    with pytest.raises(ValueError, match="not a valid split"):
        replace(RULE, confidence_splits={"agree": {**split["agree"], "feature": "colour"}})


def _model_world(n: int = 300, seed: int = 3):
    """Photos whose answers go wrong more often the less the two boxes overlap (and never depend on the rest)."""
    rng = np.random.default_rng(seed)
    features, wrong = [], []
    for _ in range(n):
        overlap = float(rng.uniform(0.0, 1.0))
        photo = dict.fromkeys(CONFIDENCE_FEATURES, 0.0)
        photo.update(agree_iou=overlap, learned_score=float(rng.uniform(0, 1)), boxed=1.0, box_size=0.3)
        features.append(photo)
        wrong.append(bool(rng.random() < 0.6 * (1.0 - overlap) ** 2))
    return features, wrong


def test_the_confidence_model_learns_which_measurement_goes_with_mistakes():
    features, wrong = _model_world()
    model = fit_confidence_model(features, wrong)
    assert model["features"] == list(CONFIDENCE_FEATURES) and model["photos"] == 300 and model["l2"] in CONFIDENCE_L2
    coef = dict(zip(model["features"], model["coef"], strict=True))
    assert coef["agree_iou"] < 0 and abs(coef["agree_iou"]) > 3 * abs(coef["learned_score"])
    assert coef["boxed"] == 0.0 and coef["box_size"] == 0.0  # never varied: standardised by 1, nothing learned
    loose, close = ({**features[0], "agree_iou": v} for v in (0.05, 0.95))
    assert model_confidence(model, loose) < 0.75 < 0.9 < model_confidence(model, close) <= 1.0
    # on average about as confident as the photos were right (in-sample calibration of a logistic fit)
    mean = np.mean([model_confidence(model, f) for f in features])
    assert abs(mean - (1 - np.mean(wrong))) < 0.01
    # too few wrong answers for a regression: none (the situation confidences stay the photos')
    few = [True] * (CONFIDENCE_MIN_PHOTOS - 1) + [False] * 200
    assert fit_confidence_model(features[: len(few)], few) is None
    assert fit_confidence_model(features, wrong) == model  # deterministic


def test_a_rule_with_a_confidence_model_gives_each_photo_its_own_confidence():
    features, wrong = _model_world()
    rule = replace(RULE, confidence_model=fit_confidence_model(features, wrong))
    shape = (768, 1024)
    close = fuse(_c(C_BOX), _l(C_BOX, 0.9), rule, shape)
    loose = fuse(_c(C_BOX), _l(L_BOX, 0.9), rule, shape)  # IoU ~0.83: a bit less sure
    assert close.score == model_confidence(
        rule.confidence_model, confidence_features(_c(C_BOX), _l(C_BOX, 0.9), C_BOX, shape, rule.rim_margin)
    )
    assert 0.0 <= loose.score < close.score <= 1.0
    far = fuse(_c(C_BOX), _l(FAR_BOX, 0.5), rule, shape)  # no overlap: low confidence, flagged
    assert far.score < rule.review_below and far.review[0] == "low_confidence"
    assert rule.confidence_levels() is None
    assert FusionRule(**json.loads(json.dumps(rule.as_dict()))) == rule  # as the rule file stores it
    assert "confidence_model" not in RULE.as_dict()  # a rule without one keeps its store keys
    with pytest.raises(ValueError, match="not a valid confidence model"):
        replace(RULE, confidence_model={**rule.confidence_model, "coef": [1.0]})
    with pytest.raises(ValueError, match="not a valid confidence model"):
        replace(RULE, confidence_model={**rule.confidence_model, "features": ["colour"] * len(CONFIDENCE_FEATURES)})


def test_fit_rule_fits_a_confidence_model_when_it_knows_the_photos_shapes():
    """With the photos' shapes and enough mistakes, the fit's confidence is a model (no splits); without the
    shapes it stays the per-situation accuracies."""
    rng = np.random.default_rng(5)
    truth, samples = (100, 100, 300, 260), []
    for i in range(120):  # agreeing boxes, right; then boxes that disagree, the classical one right or not
        samples.append((_c(C_BOX), _l(L_BOX, float(rng.uniform(0.6, 0.9))), truth))
        far = (500, 400, 600, 500) if i % 3 else truth
        samples.append((_c(far), _l((700, 500, 800, 600), float(rng.uniform(0.1, 0.4))), truth))
    shapes = [(768, 1024)] * len(samples)
    modelled, result = fit_rule(samples, shapes=shapes)
    plain, same = fit_rule(samples)
    assert result == same and modelled.confidence == plain.confidence  # the same decisions
    assert modelled.confidence_model["wrong"] == 80 and not modelled.confidence_splits  # 2 in 3 disagreeing
    assert plain.confidence_model is None
    agree = fuse(*samples[0][:2], modelled, shapes[0])
    wrong = fuse(*samples[3][:2], modelled, shapes[0])  # disagreeing, the classical box on debris
    assert agree.score > 0.95 and wrong.score < 0.5 and wrong.review[0] == "low_confidence"


def test_the_review_page_names_the_frame_a_box_is_given_in(tmp_path):
    """A box measured on the maintainer's copy of the source (2880×2160) instead of ``original_full`` (1024×768)
    was applied silently wherever it fell inside the photo: the page named only original_full's size (reviewer
    boxrt). Each caption now gives the source's size and the factor between the two."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    rows = [
        {
            **blank,
            "processid": pid,
            "image_sha256": pid.lower(),
            "image_status": "ok",
            "detector_score": 0.5,
            "params_key": "k",
            "needs_review": True,
            "review_reason": "low_confidence",
            "x0": 1,
            "y0": 2,
            "x1": 30,
            "y1": 40,
            "width_original": 1024,
            "height_original": 768,
            "source_width": source[0],
            "source_height": source[1],
        }
        for pid, source in (("PID-A", (2880, 2160)), ("PID-B", (1024, 768)), ("PID-C", (2048, 1024)))
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "images.parquet")
    write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "review")
    page = (tmp_path / "review" / "review.html").read_text()
    captions = {pid: page.split(f"{pid} · ")[1].split("</figcaption>")[0] for pid in ("PID-A", "PID-B", "PID-C")}
    assert captions["PID-A"].endswith(
        "box 1,2,30,40 in 1024×768 px of original_full; the source photo is 2880×2160: divide a box measured on it "
        "by 2.8125"
    )
    assert captions["PID-B"].endswith("box 1,2,30,40 in 1024×768 px")  # the source is original_full's size
    assert captions["PID-C"].endswith("divide a box measured on it by 2 across and 1.3333 down")
    assert "original_full pixels: the size under each photo, not its source's" in page


def test_the_review_page_shows_the_least_confident_photos_of_a_reason_first(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    flagged = [
        ("PID-A", 0.94, "low_confidence;box_on_rim"),
        ("PID-B", 0.54, "low_confidence"),
        ("PID-C", None, "box_on_rim"),
    ]
    rows = [
        {
            **blank,
            "processid": pid,
            "image_sha256": pid.lower(),
            "image_status": "ok",
            "detector_score": score,
            "params_key": "k",
            "original_full_is_source": True,
            "needs_review": True,
            "review_reason": reasons,
        }
        for pid, score, reasons in flagged
    ]
    rows[0] |= {"x0": 1, "y0": 2, "x1": 30, "y1": 40, "width_original": 1024, "height_original": 768}
    unflagged = {"processid": "PID-D", "image_sha256": "pid-d", "needs_review": False, "review_reason": None}
    rows.append({**rows[0], **unflagged})
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "images.parquet")
    counts = write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "review")
    assert counts["flagged"] == 3 and counts["low_confidence"] == 2 and counts["box_on_rim"] == 2
    page = (tmp_path / "review" / "review.html").read_text()
    low, rim = page.split("<h2 id='low_confidence'>")[1].split("<h2 id='box_on_rim'>")
    assert low.index("PID-B") < low.index("PID-A") and "PID-C" not in low
    assert rim.index("PID-C") < rim.index("PID-A")  # no score at all: first
    assert "box 1,2,30,40 in 1024×768 px" in page  # the frame a corrected box is given in
    template = (tmp_path / "review" / "box_corrections.tsv").read_text()
    assert template.index("PID-A") < template.index("PID-B") < template.index("PID-C")  # the file: by processid
    # a budget of two: the two least confident (no score first, then 0.54), the page says what was left out
    counts = write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "two", limit=2)
    assert (counts["flagged"], counts["shown"], counts["low_confidence"], counts["box_on_rim"]) == (3, 2, 1, 1)
    page = (tmp_path / "two" / "review.html").read_text()
    assert "PID-A" not in page and "The 2 least confident of the 3 flagged photos" in page
    template = (tmp_path / "two" / "box_corrections.tsv").read_text()
    assert "PID-A" not in template and template.index("PID-B") < template.index("PID-C")
    # answered, they leave the budget: the next pass offers the next photo (it offered the same two again, and the
    # template got no new line); an answer whose box lies outside the photo answers nothing, as the run refuses it
    answers = {"PID-B": "PID-B\tempty\tnone\tme", "PID-C": "PID-C\t5000,5000,6000,6000\tleg\tme"}
    lines = [answers.get(line.split("\t")[0][2:], line) for line in template.splitlines()]
    (tmp_path / "two" / "box_corrections.tsv").write_text("\n".join(lines) + "\n")
    rows[2] |= {"width_original": 1024, "height_original": 768}
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "images.parquet")
    counts = write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "two", limit=2)
    assert (counts["flagged"], counts["shown"], counts["answers_kept"]) == (3, 2, 2)
    page = (tmp_path / "two" / "review.html").read_text()
    assert "PID-A" in page and "PID-C" in page and "PID-B" not in page
    assert "1 of the 3 flagged photos are answered in box_corrections.tsv" in page
    template = (tmp_path / "two" / "box_corrections.tsv").read_text()
    assert "# PID-A\t" in template and "# PID-C\t" in template and "# PID-B" not in template
    with pytest.raises(ValueError, match="at least 1"):
        write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "none", limit=0)


def test_a_photo_two_records_share_is_in_the_review_queue_and_the_summary(tmp_path):
    """One photo file copied under a second record's name (a delivery mistake: two specimens cannot share a photo)
    released both records with the same box, unflagged. The run's summary counts such photos and the review page
    lists them, whichever shards the records fall in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA, summarize_shards

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    photo = {**blank, "image_status": "ok", "params_key": "k", "needs_review": False}
    shards = {
        "shard-000": [{**photo, "processid": "P1", "image_sha256": "a" * 64}, {**photo, "processid": "P2"}],
        "shard-001": [
            {**photo, "processid": "P3", "image_sha256": "a" * 64},
            {**photo, "processid": "P4", "image_sha256": "b" * 64, "needs_review": True, "review_reason": "box_on_rim"},
        ],
    }
    tables, summaries = [], []
    for name, rows in shards.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / f"{name}.parquet")
        (tmp_path / f"{name}.json").write_text(json.dumps({"status": {"ok": 2}, "records": 2}))
        tables.append(tmp_path / f"{name}.parquet")
        summaries.append(tmp_path / f"{name}.json")
    summary = summarize_shards(summaries, tmp_path / "summary.json", image_tables=tables)
    assert summary["shared_photos"] == {"photos": 1, "records": 2, "shown": {"a" * 64: ["P1", "P3"]}}
    counts = write_review(tables, tmp_path / "store", tmp_path / "review")
    assert (counts["flagged"], counts["shared_photo"], counts["box_on_rim"]) == (3, 2, 1)
    page = (tmp_path / "review" / "review.html").read_text()
    shared = page.split("<h2 id='shared_photo'>")[1]
    assert "P1" in shared and "P3" in shared and "P4" not in shared
    assert "\tshared_photo\treview\t" in (tmp_path / "review" / "box_corrections.tsv").read_text()


def test_the_same_pixels_in_another_file_are_a_shared_photo(tmp_path, realdata):
    """A photo saved again with a comment (or other metadata) under a second record's name has other bytes and
    the same pixels: it was never ``shared_photo``, and one specimen was released as two (reviewer degen). Its
    ``original_256`` image, made from the pixels, is the same."""
    import hashlib
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.images.process import process_photos
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA, shared_photos

    class FixedDetector:
        def detect_batch(self, images, halves=None):
            return [Detection("ok", (300, 200, 420, 300), pixel_count=500, score=1.0, candidates=1) for _ in images]

    source = sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0].read_bytes()
    again = source[:2] + b"\xff\xfe\x00\x09another" + source[2:]  # a comment segment after SOI
    other = sorted((realdata / "imgfilter-dev").glob("*.jpg"))[1].read_bytes()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(again))), np.asarray(Image.open(io.BytesIO(source))))
    results = process_photos([source, again, other], FixedDetector(), ImageParams())
    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    rows = [
        {
            **blank,
            "processid": pid,
            "image_status": result.status,
            "image_sha256": hashlib.sha256(data).hexdigest(),
            "sha256_original_256": result.sha256["original_256"],
        }
        for pid, data, (result, _) in zip(("P1", "P2", "P3"), (source, again, other), results, strict=True)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "images.parquet")
    shared = shared_photos([tmp_path / "images.parquet"])
    assert shared == {min(rows[0]["image_sha256"], rows[1]["image_sha256"]): ["P1", "P2"]}


def test_shared_photo_records_a_maintainer_corrected_leave_the_queue_and_empty_tables_are_no_shared_photos(tmp_path):
    """Records sharing a photo stayed flagged after both had a box correction (the reason asks for exactly that);
    a run whose image tables are all empty (no usable photo) crashed the summary and the review page."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import flagged_rows, write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA, shared_photos, summarize_shards

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    photo = {**blank, "image_status": "ok", "params_key": "k", "needs_review": False, "image_sha256": "a" * 64}
    rows = [
        {**photo, "processid": "P1", "box_source": "correction"},
        {**photo, "processid": "P2", "box_source": "correction"},
        {**photo, "processid": "P3", "box_source": "detector"},
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "shard.parquet")
    assert shared_photos([tmp_path / "shard.parquet"]) == {"a" * 64: ["P1", "P2", "P3"]}
    assert [r["processid"] for r in flagged_rows([tmp_path / "shard.parquet"])] == ["P3"]  # the one not answered
    empty = tmp_path / "empty.parquet"
    pq.write_table(IMAGE_RECORD_SCHEMA.empty_table(), empty)
    (tmp_path / "empty.json").write_text(json.dumps({"status": {}, "records": 0}))
    assert shared_photos([empty, empty]) == {}
    summary = summarize_shards([tmp_path / "empty.json"], tmp_path / "summary.json", image_tables=[empty])
    assert summary["shared_photos"] == {"photos": 0, "records": 0, "shown": {}}
    assert write_review([empty], tmp_path / "store", tmp_path / "review")["flagged"] == 0


def test_writing_the_review_again_keeps_the_answers_already_given(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    rows = [
        {**blank, "processid": pid, "image_sha256": pid, "image_status": "ok", "params_key": "k"}
        | {"original_full_is_source": True, "needs_review": True, "review_reason": "box_on_rim"}
        for pid in ("PID-A", "PID-B")
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tmp_path / "images.parquet")
    assert write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "q")["answers_kept"] == 0
    template = tmp_path / "q" / "box_corrections.tsv"
    answered = template.read_text().replace("# PID-B\tempty\tbox_on_rim\treview", "PID-B\t1,2,30,40\tleg\tme")
    template.write_text(answered)
    counts = write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "q")
    assert counts["answers_kept"] == 1 and counts["flagged"] == 2
    text = template.read_text()
    assert "PID-B\t1,2,30,40\tleg\tme\tPID-B\tempty\n" in text and "# PID-B" not in text and "# PID-A" in text
    assert load_box_corrections(template)["PID-B"].box == (1, 2, 30, 40)
    # an answer typed in another case answers its record, as records match
    template.write_text(text.replace("# PID-A\tempty\tbox_on_rim\treview", "pid-a\tempty\tnone\tme"))
    assert write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "q")["answers_kept"] == 2
    assert "# PID-A" not in template.read_text() and "pid-a\tempty\tnone\tme\tPID-A\tempty\n" in template.read_text()
    # a column and a comment of the maintainer's own: kept word for word (the template was rebuilt from the five
    # known columns, and the note was lost)
    header = "processid\tbox\treason\tsource\timage_sha256\tnote"
    template.write_text(f"{header}\n# ask Anna about PID-A\nPID-B\t1,2,30,40\tleg\tme\tPID-B\tcheck the wing\n")
    assert write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "q")["answers_kept"] == 1
    text = template.read_text()
    assert (
        f"{header}\toffered_box\n# ask Anna about PID-A\nPID-B\t1,2,30,40\tleg\tme\tPID-B\tcheck the wing\n# PID-A\t"
        in text
    )
    assert load_box_corrections(template)["PID-B"].box == (1, 2, 30, 40)
    # a file there that is no corrections table (the pipeline's outcome table is one, with a column more): refused
    template.write_text("something\telse\n")
    with pytest.raises(InputError, match="missing column"):
        write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "q")
    assert template.read_text() == "something\telse\n"
    # -o naming a file (the template itself): said so (it said "File exists")
    with pytest.raises(ValueError, match="box_corrections.tsv is a file: give a folder"):
        write_review([tmp_path / "images.parquet"], tmp_path / "store", template)


def _two_flagged_photos(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    rows = [
        {**blank, "processid": pid, "image_sha256": sha, "image_status": "ok", "params_key": "k"}
        | {"original_full_is_source": True, "needs_review": True, "review_reason": "box_on_rim"}
        for pid, sha in (("PID-A", "aa11"), ("PID-B", "bb22"))
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), path)
    return [path]


def test_untouched_queue_lines_leave_when_the_detector_box_changes(tmp_path):
    """An edit was any queue line whose box differed from the detector's current one: after a detector update (or
    a correction) every untouched line was kept beside the fresh one, moved, and counted as the maintainer's
    (`edited_but_commented`, `kept_not_shown`). The line now carries the box it offered; only a box typed over it
    is an edit. A template from before (no `offered_box`) is read as it was."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    tables = _two_flagged_photos(tmp_path / "images.parquet")
    template = tmp_path / "q" / "box_corrections.tsv"
    write_review(tables, tmp_path / "store", tmp_path / "q")
    rows = pq.read_table(tables[0]).to_pylist()
    for row in rows:  # a detector update: both photos get a box
        row |= {"x0": 10, "y0": 10, "x1": 50, "y1": 50, "width_original": 100, "height_original": 80}
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tables[0])
    counts = write_review(tables, tmp_path / "store", tmp_path / "q")
    text = template.read_text()
    assert (counts["edited_but_commented"], counts["kept_not_shown"]) == (0, 0)
    assert "\tempty" not in text and text.count("# PID-A\t10,10,50,50\tbox_on_rim\treview\taa11\t10,10,50,50\n") == 1
    # a box typed over one line is an edit; PID-B no longer flagged: its untouched line leaves
    template.write_text(text.replace("# PID-A\t10,10,50,50", "# PID-A\t12,10,50,50"))
    rows[1] |= {"needs_review": False, "review_reason": None}
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), tables[0])
    counts = write_review(tables, tmp_path / "store", tmp_path / "q")
    text = template.read_text()
    assert (counts["edited_but_commented"], counts["kept_not_shown"]) == (1, 0) and "# PID-B" not in text
    assert "# PID-A\t12,10,50,50\tbox_on_rim\treview\taa11\t10,10,50,50\n# PID-A\t10,10,50,50\t" in text
    # the template an earlier version wrote: a line whose box is not the detector's is taken for typed
    template.write_text("processid\tbox\treason\tsource\timage_sha256\n# PID-A\tempty\tbox_on_rim\treview\taa11\n")
    assert write_review(tables, tmp_path / "store", tmp_path / "q")["edited_but_commented"] == 1


def test_an_answer_for_a_replaced_photo_or_with_a_broken_box_leaves_the_photo_in_the_queue(tmp_path):
    """PID-A's answer was drawn on the photo a redelivery replaced, PID-B's box ends before it starts: neither
    answers the photo now flagged, so both get a queue line (they had none: the new photo was never offered)."""
    from bioscan_rebuild.images.review import write_review

    tables = _two_flagged_photos(tmp_path / "images.parquet")
    template = tmp_path / "q" / "box_corrections.tsv"
    template.parent.mkdir()
    template.write_text(
        "processid\tbox\treason\tsource\timage_sha256\nPID-A\t1,2,30,40\tleg\tme\t0ld0\nPID-B\t10,20,5,40\tleg\tme\n"
    )
    counts = write_review(tables, tmp_path / "store", tmp_path / "q")
    assert counts["flagged"] == 2 and counts["answers_kept"] == 2
    text = template.read_text()
    assert "# PID-A\tempty\tbox_on_rim\treview\taa11\tempty\n" in text
    assert "# PID-B\tempty\tbox_on_rim\treview\tbb22\tempty" in text
    # the new line, uncommented, is the record's answer: a later row wins
    template.write_text(text.replace("# PID-A\tempty", "PID-A\tempty"))
    answer = load_box_corrections(template)["PID-A"]
    assert answer.box is None and answer.fits("aa11")
    assert "# PID-A" not in write_review(tables, tmp_path / "store", tmp_path / "q") and "# PID-A" not in (
        template.read_text()
    )


@pytest.mark.parametrize(
    "header",
    [
        "processid\tbox\treason\tsource",
        "processid\tbox\treason\tsource\tnote",
        "source\treason\tbox\tprocessid",
        "processid\tbox\treason\tsource\t\t",  # a spreadsheet's trailing tabs: no unnamed column before the photo
    ],
)
def test_queue_lines_follow_the_maintainers_header_and_keep_their_photo(tmp_path, header):
    """Queue lines were written in the template's own column order whatever header the file kept: under a header
    with a column of the maintainer's own the photo's sha256 went into it (the box no longer tied to its photo),
    under the documented four columns an uncommented line refused the whole file."""
    from bioscan_rebuild.images.review import write_review

    tables = _two_flagged_photos(tmp_path / "images.parquet")
    template = tmp_path / "q" / "box_corrections.tsv"
    template.parent.mkdir()
    template.write_text(header + "\n")
    write_review(tables, tmp_path / "store", tmp_path / "q")
    lines = template.read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [header.rstrip("\t") + "\timage_sha256\toffered_box"]
    uncommented = [line[2:] if line.startswith("# ") and "\t" in line else line for line in lines]
    template.write_text("\n".join(uncommented) + "\n")
    answers = load_box_corrections(template)
    assert {key: (answer.box, answer.image_sha256) for key, answer in answers.items()} == {
        "PID-A": (None, "aa11"),
        "PID-B": (None, "bb22"),
    }


def test_a_box_edited_in_a_line_left_commented_and_the_maintainers_tabbed_comments_are_kept(tmp_path):
    """Any commented line holding a tab was taken for a queue line and written afresh: a box typed into a line
    the maintainer forgot to uncomment, and their own tab-separated notes, were lost. Both stay, the edited line
    above the fresh one; the count says how many edits answer nothing yet."""
    from bioscan_rebuild.images.review import write_review

    tables = _two_flagged_photos(tmp_path / "images.parquet")
    assert write_review(tables, tmp_path / "store", tmp_path / "q")["edited_but_commented"] == 0
    template = tmp_path / "q" / "box_corrections.tsv"
    edited = template.read_text().replace("# PID-A\tempty", "#PID-A\t100,200,300,400")
    template.write_text(edited + "# to do\tcheck PID-B's wing\n")
    counts = write_review(tables, tmp_path / "store", tmp_path / "q")
    assert counts["edited_but_commented"] == 1
    text = template.read_text()
    # the maintainer's line, then the detector's (the old box may be an earlier detector's: both, side by side)
    assert (
        "#PID-A\t100,200,300,400\tbox_on_rim\treview\taa11\tempty\n# PID-A\tempty\tbox_on_rim\treview\taa11\tempty\n"
        in (text)
    )
    assert "# to do\tcheck PID-B's wing\n" in text and text.count("# PID-B\t") == 1
    assert write_review(tables, tmp_path / "store", tmp_path / "q")["edited_but_commented"] == 1
    assert template.read_text() == text  # nothing grows or moves on another pass


def test_the_contact_sheet_shows_flagged_photos_first_the_least_confident_first():
    from bioscan_rebuild.images.contact_sheet import sheet_order

    rows = [
        {"processid": "A", "needs_review": False, "detector_score": 0.1, "image_status": "ok"},
        {"processid": "B", "needs_review": True, "detector_score": 0.94, "image_status": "ok"},
        {"processid": "C", "needs_review": False, "detector_score": 0.9, "image_status": "no_object"},
        {"processid": "D", "needs_review": True, "detector_score": 0.72, "image_status": "touches_edge"},
        {"processid": "E", "needs_review": True, "detector_score": None, "image_status": "ok"},
    ]
    assert [r["processid"] for r in sheet_order(rows)] == ["E", "D", "B", "C", "A"]


def test_the_confidence_model_converges_or_stays_out_on_hard_and_bad_measurements():
    """A rare measurement that alone separates the mistakes (the penalty keeps the fit finite), and a measurement
    that is not a number (no model: the situation confidences stay)."""
    features, wrong = [], []
    for i in range(200):
        photo = dict.fromkeys(CONFIDENCE_FEATURES, 0.0)
        photo.update(agree_iou=(i % 17) / 17, box_on_rim=float(i < 12), boxed=1.0)
        features.append(photo)
        wrong.append(i < 12)
    model = fit_confidence_model(features, wrong)
    assert model is not None and np.isfinite([model["intercept"], *model["coef"]]).all()
    assert model_confidence(model, features[0]) < 0.5 < 0.95 < model_confidence(model, features[50])
    broken = [dict(f, learned_score=float("nan")) if i == 3 else f for i, f in enumerate(features)]
    assert fit_confidence_model(broken, wrong) is None
    with pytest.raises(ValueError, match="not a valid confidence model"):
        replace(RULE, confidence_model={**model, "intercept": float("nan")})
    with pytest.raises(ValueError, match="not a valid confidence model"):
        replace(RULE, confidence_model={**model, "features": [model["features"][0]] * len(model["features"])})
    # a photo whose measurement went wrong at run time gets no confidence: a person looks
    assert model_confidence(model, dict(features[50], agree_iou=float("nan"))) == 0.0


def test_the_review_table_ranks_mistakes_without_depending_on_photo_order():
    from bioscan_rebuild.detect.heldout import confidence_auc, least_confident_wrong, review_table

    ranked = [(0.2, False), (0.5, True), (0.5, False), (0.9, True)]
    assert [least_confident_wrong(ranked, n) for n in range(5)] == [0.0, 0.0, 0.5, 1.0, 2.0]
    assert [least_confident_wrong(ranked[::-1], n) for n in range(5)] == [0.0, 0.0, 0.5, 1.0, 2.0]
    assert confidence_auc(ranked) == 0.5 / 4  # of 4 wrong-right pairs only the tie at 0.5 counts (half)
    assert confidence_auc([(0.3, True)]) is None  # no right answer to rank against

    def row(truth, classical, learned):
        return {
            "half": "holdout", "file_name": "p.jpg", "image_class": "valid", "polygon_area": None,
            "truth": truth, "classical": classical, "learned": learned, "shape": (768, 1024),
        }  # fmt: skip

    rows = [
        row(C_BOX, _c(C_BOX), _l(L_BOX, 0.9)),  # agree, right
        row(C_BOX, _c(C_BOX), _l(FAR_BOX, 0.5)),  # classical chosen, right
        row(FAR_BOX, _c(C_BOX), _l(FAR_BOX, 0.5)),  # classical chosen (0.7 < 0.85: flagged), wrong
        row(None, _c(C_BOX), _l(L_BOX, 0.9)),  # an empty well boxed where both agree: wrong, not flagged
    ]
    table = review_table(rows, RULE)
    assert (table["photos"], table["wrong"], table["flagged"], table["wrong_flagged"]) == (4, 2, 2, 1)
    assert table["after_review"] == {"specimens": 1.0, "empty_wells": 0.0}
    assert table["least_confident"] == {"0.1": 0.0, "0.25": 0.5, "0.5": 1.0}


def test_with_a_confidence_model_disagreement_alone_flags_nothing():
    """The model weighs how the two boxes overlap, so a disagreement it still trusts needs no look; a flagged
    photo names it among its reasons. Without a model (RULE) disagreement alone flags the photo, as before."""
    features, wrong = _model_world()
    rule = replace(RULE, confidence_model=fit_confidence_model(features, wrong))
    classical, learned, shape = _c(C_BOX), _l(FAR_BOX, 0.9), (768, 1024)
    assert fuse(classical, learned, replace(rule, review_below=0.0), shape).review == ()
    flagged = fuse(classical, learned, replace(rule, review_below=1.0), shape)
    assert flagged.review == ("low_confidence", "backends_disagree")
    assert fuse(
        classical, learned, replace(RULE, confidence={**RULE.confidence, "learned_chosen": 0.99}), shape
    ).review == ("backends_disagree",)
    # on the rim, several specimens: flagged whatever the confidence (the photo itself needs a look)
    rim = fuse(_c((0, 300, 90, 400)), _l((0, 300, 90, 400), 0.9), replace(rule, review_below=0.0), shape)
    assert rim.review == ("box_on_rim",)


def test_a_fitted_model_flags_photos_more_likely_wrong_than_the_average_training_photo():
    rng = np.random.default_rng(5)
    truth, samples = (100, 100, 300, 260), []
    for i in range(120):
        samples.append((_c(C_BOX), _l(L_BOX, float(rng.uniform(0.6, 0.9))), truth))
        far = (500, 400, 600, 500) if i % 3 else truth
        samples.append((_c(far), _l((700, 500, 800, 600), float(rng.uniform(0.1, 0.4))), truth))
    rule, _ = fit_rule(samples, review_below=0.5, shapes=[(768, 1024)] * len(samples))
    assert rule.review_below == round(1 - 80 / 240, 4)  # the training photos' share of right answers
    assert fit_rule(samples, review_below=0.5)[0].review_below == 0.5  # no model: the caller's bar


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agree_box": "Mean"}, "agree_box = 'Mean' is not one of"),
        ({"trust_learned": float("nan")}, "trust_learned = nan is not a finite number"),
        ({"review_below": "0.8"}, "review_below = '0.8' is not a finite number"),
        ({"empty_learned_only_max": float("inf")}, "empty_learned_only_max = inf"),
        ({"confidence": {"agree": float("nan")}}, "confidence['agree'] = nan is not a chance in [0, 1]"),
        ({"confidence": {"agreed": 0.9}}, "confidence = {'agreed': 0.9}: situations are"),
        ({"rim_margin": -1}, "rim_margin = -1 is not a whole number"),
    ],
)
def test_a_rule_with_a_value_it_cannot_use_is_refused_at_load(change, message):
    """A typo in agree_box fused two agreeing boxes to nothing; a NaN confidence never flagged its photo."""
    with pytest.raises(ValueError, match=re.escape(message)):
        FusionRule(**{**RULE.as_dict(), **change})


def test_the_review_page_and_contact_sheet_show_photos_a_store_without_originals_holds(tmp_path, realdata):
    """image_store.mode none keeps no originals, so a 1024x768 source that is its own original_full is not in
    the store: the page and the sheet show its stored original_256, the box scaled to that frame."""
    import base64
    import hashlib

    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.core.params import ImageParams
    from bioscan_rebuild.core.store import ImageStore
    from bioscan_rebuild.detect.classical import ClassicalDetector
    from bioscan_rebuild.images.contact_sheet import whole_photo, write_contact_sheet
    from bioscan_rebuild.images.process import DerivedStore, process_photos
    from bioscan_rebuild.images.review import THUMB_WIDTH, write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA, result_row

    photo = sorted((realdata / "imgfilter-dev").glob("*.jpg"))[0]
    data = photo.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ((result, images),) = process_photos([data], ClassicalDetector(), ImageParams())
    assert result.original_full_is_source and result.box is not None
    store = ImageStore(tmp_path / "store", mode="none")
    assert store.put_original(photo, sha, "jpeg", data) is None  # no original kept
    DerivedStore(store, "k").save(sha, result, images)
    keys = dict.fromkeys(("detector_version", "detector_params_key", "image_params_key"), "x") | {"params_key": "k"}
    row = result_row("PID-1", sha, result, "classical", keys) | {"needs_review": True, "review_reason": "box_on_rim"}
    table = pa.Table.from_pylist([row], schema=IMAGE_RECORD_SCHEMA)
    pq.write_table(table, tmp_path / "images.parquet")

    image, to_image = whole_photo(store, row)
    assert image.shape[:2] == (256, 341) and to_image == pytest.approx(341 / 1024)
    write_review([tmp_path / "images.parquet"], tmp_path / "store", tmp_path / "review")
    page = (tmp_path / "review" / "review.html").read_text()
    assert "not in the store" not in page
    encoded = re.search(r"src='data:image/jpeg;base64,([^']+)'", page).group(1)
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[1] == THUMB_WIDTH
    # the red box sits where the detector's box is, in the thumbnail's frame
    red = (thumb[..., 2] > 180) & (thumb[..., 1] < 90) & (thumb[..., 0] < 90)
    ys, xs = np.nonzero(red)
    x0, y0, x1, y1 = (v * THUMB_WIDTH / 1024 for v in result.box)
    assert abs(xs.min() - x0) <= 3 and abs(xs.max() - x1) <= 3 and abs(ys.min() - y0) <= 3 and abs(ys.max() - y1) <= 3
    write_contact_sheet(table, store, tmp_path / "sheet.jpg", limit=4)
    sheet = cv2.imread(str(tmp_path / "sheet.jpg"))
    assert sheet[:192, :256].mean() < 240  # the photo, not the blank tile
    # a photo never decoded has no frame to show
    assert whole_photo(store, {**row, "params_key": None, "width_original": None}) is None


def test_a_box_typed_for_a_photo_a_smaller_budget_no_longer_shows_is_kept(tmp_path):
    """review --limit 2, a box typed into each of the two lines (still commented), then review --limit 1: the
    second photo's line left the template with the maintainer's box in it. Typed boxes of photos not shown now
    stay (past the limit, no longer flagged, or the record gone); untouched lines of photos not shown leave."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioscan_rebuild.images.review import write_review
    from bioscan_rebuild.images.shard import IMAGE_RECORD_SCHEMA

    blank = dict.fromkeys(IMAGE_RECORD_SCHEMA.names)
    photo = {**blank, "image_status": "ok", "params_key": "k", "original_full_is_source": True}
    rows = [
        {**photo, "processid": pid, "image_sha256": sha, "detector_score": score, "needs_review": True}
        | {"review_reason": "low_confidence"}
        for pid, sha, score in (("PID-A", "aa11", 0.2), ("PID-B", "bb22", 0.4), ("PID-C", "cc33", 0.6))
    ]
    table = tmp_path / "images.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGE_RECORD_SCHEMA), table)
    assert write_review([table], tmp_path / "store", tmp_path / "q", limit=2)["shown"] == 2
    template = tmp_path / "q" / "box_corrections.tsv"
    text = template.read_text()
    assert "# PID-C" not in text
    typed = text.replace("# PID-A\tempty", "# PID-A\t1,2,30,40").replace("# PID-B\tempty", "# PID-B\t5,6,70,80")
    template.write_text(typed)
    counts = write_review([table], tmp_path / "store", tmp_path / "q", limit=1)
    text = template.read_text()
    assert "# PID-A\t1,2,30,40\tlow_confidence\treview\taa11\tempty\n# PID-A\tempty\t" in text
    assert "# PID-B\t5,6,70,80\tlow_confidence\treview\tbb22\tempty\n" in text and "# PID-B\tempty" not in text
    assert (counts["shown"], counts["edited_but_commented"], counts["kept_not_shown"]) == (1, 1, 1)
    assert write_review([table], tmp_path / "store", tmp_path / "q", limit=1)["kept_not_shown"] == 1
    assert template.read_text() == text  # stable from pass to pass
    # PID-B no longer flagged: its typed box stays; PID-A's record gone from the run: its typed line stays, the
    # untouched one (its box the one offered) leaves
    rows[1]["needs_review"], rows[1]["review_reason"] = False, None
    pq.write_table(pa.Table.from_pylist(rows[1:], schema=IMAGE_RECORD_SCHEMA), table)
    counts = write_review([table], tmp_path / "store", tmp_path / "q")
    again = template.read_text()
    assert (counts["shown"], counts["kept_not_shown"]) == (1, 2)
    assert "# PID-B\t5,6,70,80\t" in again and "# PID-A\t1,2,30,40\t" in again and "# PID-A\tempty\t" not in again
    # once PID-B's box is uncommented it is an answer, and its commented line is not kept beside it
    template.write_text(again.replace("# PID-B\t5,6,70,80", "PID-B\t5,6,70,80"))
    counts = write_review([table], tmp_path / "store", tmp_path / "q")
    assert counts["answers_kept"] == 1 and "# PID-B" not in template.read_text()


def test_the_review_page_and_template_are_utf8_whatever_the_locale(tmp_path):
    """Under a C (ASCII) locale `review` failed on the page's `·` and `×`; under Latin-1 it wrote bytes the page's
    charset=utf-8 misreads."""
    import os
    import subprocess
    import sys

    tables = _two_flagged_photos(tmp_path / "images.parquet")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = (
        "import sys; from bioscan_rebuild.images.review import write_review; "
        "write_review([sys.argv[1]], sys.argv[2], sys.argv[3])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tables[0]), str(tmp_path / "store"), str(tmp_path / "q")],
        env=env,
        check=True,
        capture_output=True,
    )
    assert "PID-A · ok" in (tmp_path / "q" / "review.html").read_text(encoding="utf-8")


def test_the_reports_captions_say_what_the_code_does():
    """The contact sheet's caption put photos not ``ok`` first, where the sheet opens with the flagged ones; the
    image summary's caption left out the ``record_rejected`` outcome (reviewer docs)."""
    from bioscan_rebuild.images.contact_sheet import sheet_order
    from bioscan_rebuild.images.corrections import OUTCOME_DETAIL
    from conftest import REPO

    report = REPO / "workflow" / "report"
    caption = " ".join((report / "images_summary.rst").read_text().split())
    for outcome in [*OUTCOME_DETAIL, "invalid_value"]:
        assert f"``{outcome}``" in caption, outcome
    rows = [
        {"processid": "a", "image_status": "no_object", "needs_review": False},
        {"processid": "b", "image_status": "ok", "needs_review": False},
        {"processid": "c", "image_status": "ok", "needs_review": True, "detector_score": 0.4},
    ]
    assert [row["processid"] for row in sheet_order(rows)] == ["c", "a", "b"]
    sheet = " ".join((report / "contact_sheet.rst").read_text().split())
    assert sheet.index("flagged for review come first") < sheet.index("not ``ok``") < sheet.index("then the others")
