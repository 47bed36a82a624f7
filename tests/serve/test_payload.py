import re
import struct

import numpy as np
import pytest

from towerlab.serve.kinds import KINDS, kind_of
from towerlab.serve.payload import RowError, to_image
from towerlab.serve.settings import Normalize, Payload


def to_matrix(row, p):
    return kind_of(p).matrix(row, p)


def test_columns_text_and_blob_give_the_same_matrix():
    values = [0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
    cols = Payload(kind="columns", columns=[f"c{i}" for i in range(6)], height=2, width=3)
    text = Payload(kind="text", column="v", delimiter=";", height=2, width=3)
    blob = Payload(kind="blob", column="v", height=2, width=3)
    expected = np.array(values, np.float32).reshape(2, 3)
    assert np.array_equal(to_matrix({f"c{i}": v for i, v in enumerate(values)}, cols), expected)
    assert np.array_equal(to_matrix({"v": "0; 1.5;3;4.5;6;7.5"}, text), expected)
    assert np.array_equal(to_matrix({"v": struct.pack("<6f", *values)}, blob), expected)


@pytest.mark.parametrize(
    "row, payload, fragment",
    [
        ({"v": "1,2,3"}, Payload(kind="text", column="v", height=2, width=2), "expected 4 values (2x2), got 3"),
        ({"v": "1,2,x,4"}, Payload(kind="text", column="v", height=2, width=2), "'x' where a number belongs"),
        ({"v": "1,nan,3,4"}, Payload(kind="text", column="v", height=2, width=2), "NaN or infinite"),
        ({"v": b"\x00" * 15}, Payload(kind="blob", column="v", height=2, width=2), "expected 16 bytes"),
        ({"a": 1, "b": "text"}, Payload(kind="columns", columns=["a", "b"], height=1, width=2), "column b: 'text'"),
        ({"a": 1, "b": None}, Payload(kind="columns", columns=["a", "b"], height=1, width=2), "column b: None"),
        # finite in the database, infinite in the model's float32: an error naming the value, never graded ok
        (
            {"v": "1,1e39,3,4"},
            Payload(kind="text", column="v", height=2, width=2),
            "value 1 is 1e+39, outside float32's range",
        ),
        (
            {"v": "1,2,-3.5e38,4"},
            Payload(kind="text", column="v", height=2, width=2),
            "value 2 is -3.5e+38, outside float32",
        ),
        (
            {"a": 1, "b": __import__("decimal").Decimal("1e300")},
            Payload(kind="columns", columns=["a", "b"], height=1, width=2),
            "value 1 is 1e+300, outside float32",
        ),
    ],
)
def test_bad_rows_say_why(row, payload, fragment):
    with pytest.raises(RowError, match=re.escape(fragment)):
        to_matrix(row, payload)


def test_normalisations():
    m = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    assert to_image(m, Normalize(kind="minmax")).tolist() == [[[0, 64], [128, 255]]]
    assert to_image(m, Normalize(kind="fixed", offset=2, scale=4)).tolist() == [[[0, 128], [255, 255]]]
    assert to_image(np.full((2, 2), 5.0, np.float32), Normalize(kind="minmax")).max() == 0  # constant: no division by 0


def test_an_image_row_claiming_a_huge_size_is_refused_before_decoding():
    """Small PNGs whose headers claim 8,000 x 8,000 and 20,000 x 20,000 pixels: error outcomes, nothing allocated."""
    import io
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(side):
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b"")
        )

    with pytest.raises(RowError, match="8000x8000 image"):
        KINDS["image"].read({"png": png(8000)}, Payload(kind="image", column="png"), None, 1, None)
    with pytest.raises(RowError, match="pixels towerlab decodes"):  # past Pillow's own limit too
        KINDS["image"].read({"png": png(20_000)}, Payload(kind="image", column="png"), None, 1, None)
    assert len(io.BytesIO(png(20_000)).getvalue()) < 100


def test_every_kind_is_in_the_registry_and_an_unknown_one_is_refused_naming_them():
    """Adding a kind is one class in kinds.py and one line in KINDS; settings accept exactly those."""
    from pydantic import ValidationError

    assert list(KINDS) == ["columns", "text", "blob", "image", "path"]
    assert {k.family for k in KINDS.values()} <= {"binary", "text", "numeric"}
    with pytest.raises(ValidationError, match="kind 'png' is not one of columns, text, blob, image, path"):
        Payload(kind="png", column="v")


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"kind": "text", "column": "v"}, "kind=text needs height and width"),
        ({"kind": "blob", "height": 2, "width": 2}, "kind=blob needs 'column'"),
        ({"kind": "columns", "columns": ["a"], "height": 2, "width": 2}, "needs height*width = 4 columns, got 1"),
        ({"kind": "path", "column": "p", "root": "/no/such/folder"}, "kind=path needs 'root'"),
    ],
)
def test_each_kind_says_what_its_settings_lack(fields, fragment):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(fragment)):
        Payload(**fields)
