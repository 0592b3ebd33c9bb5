"""The preprocessing shared by packager and device, on scikit-image's sample photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from skimage import data as samples

from edge.errors import ConfigError, DataError, InputError
from edge.runtime.preprocess import (
    Geometry,
    PreprocessSpec,
    center_crop,
    image_geometry,
    letterbox,
    parse_spec,
    preprocess_image,
    read_image,
    spec_for_input,
    stretch,
)

MODES = ("stretch", "letterbox", "center_crop")


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The cat photo (300 x 451) written as PNG and read back the way the device reads it."""
    path = tmp_path_factory.mktemp("images") / "chelsea.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(samples.chelsea(), cv2.COLOR_RGB2BGR))
    return read_image(path)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """The 512 x 512 grayscale cameraman, HxW uint8."""
    return samples.camera()


# --- the spec -----------------------------------------------------------------------------


def test_default_spec_and_manifest_round_trip() -> None:
    spec = PreprocessSpec(size=(224, 224), resize="letterbox", mean=(0.5, 0.4, 0.3))
    again = parse_spec(spec.model_dump(mode="json"))
    assert again == spec
    assert again.size == (224, 224)
    with pytest.raises(ValidationError, match="frozen"):
        spec.resize = "stretch"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"std": [0.5, 0.0, 1.0]}, r"std: std values must be > 0, got \[0.5, 0.0, 1.0\]"),
        ({"input_range": [1, -1]}, r"input_range: low must be < high, got \[1.0, -1.0\]"),
        ({"size": [0, 224]}, r"size: height and width must be >= 1"),
        ({"mean": [1, 2]}, r"mean has 2 values; color 'rgb' takes one value or three"),
        ({"color": "gray", "std": [1, 2, 3]}, r"std has 3 values; color 'gray' takes one value"),
        ({"colour": "rgb"}, r"colour: unknown key \(known: size, resize, color"),
        ({"resize": "crop"}, r"resize: Input should be 'stretch', 'letterbox' or 'center_crop'"),
        ({"letterbox_value": 300}, r"letterbox_value: Input should be less than or equal to 255"),
        ({"mean": ["nan"]}, r"mean\.0: Input should be a finite number"),
    ],
)
def test_bad_specs_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_spec(data, source="manifest.json preprocessing")
    assert str(info.value).startswith("manifest.json preprocessing: ")


# --- sizes and geometry -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_target_size(chelsea: np.ndarray, mode: str) -> None:
    spec = PreprocessSpec(resize=mode, size=(96, 128))  # type: ignore[arg-type]
    assert preprocess_image(chelsea, spec).shape == (96, 128, 3)
    assert preprocess_image(chelsea, spec, size=(50, 40)).shape == (50, 40, 3)


def test_letterbox_pads_with_the_fill_value_and_maps_boxes_back(chelsea: np.ndarray) -> None:
    spec = PreprocessSpec(resize="letterbox", letterbox_value=114, color="bgr")
    out = preprocess_image(chelsea, spec, size=(200, 200))
    geometry = letterbox((300, 451), (200, 200))
    assert geometry == image_geometry(chelsea, spec, size=(200, 200))
    # 451 wide -> 200 wide, 300 high -> 133 high, centred: 33 rows of fill above, 34 below
    assert geometry.place == (0, 33, 200, 133)
    # the padding is exactly what a pixel of 114 becomes
    fill = preprocess_image(np.full((2, 2, 3), 114, np.uint8), spec, size=(1, 1))[0, 0]
    assert np.all(out[:33] == fill) and np.all(out[166:] == fill)
    np.testing.assert_allclose(fill, 114 / 255)
    expected = cv2.resize(chelsea, (200, 133), interpolation=cv2.INTER_LINEAR) / 255.0
    np.testing.assert_allclose(out[33:166], expected, atol=1e-6)
    # the full picture in model pixels is the full photo; a box in the middle scales by 451/200
    assert geometry.to_source((0, 33, 200, 166)) == pytest.approx((0, 0, 451, 300), abs=0.01)
    x0, y0, x1, y1 = geometry.to_source((50, 60, 150, 120))
    assert (x0, x1) == pytest.approx((50 * 2.255, 150 * 2.255))
    assert (y0, y1) == pytest.approx(((60 - 33) * 300 / 133, (120 - 33) * 300 / 133))
    # boxes reaching into the padding are clipped to the photo
    assert geometry.to_source((-10, 0, 210, 200)) == pytest.approx((0, 0, 451, 300))


def test_center_crop_takes_the_middle(chelsea: np.ndarray) -> None:
    spec = PreprocessSpec(resize="center_crop", color="bgr", interpolation="area")
    out = preprocess_image(chelsea, spec, size=(100, 100))
    geometry = center_crop((300, 451), (100, 100))
    assert geometry.crop == (75, 0, 300, 300)  # the middle 300 x 300 of the 451-wide photo
    middle = cv2.resize(chelsea[:, 75:375], (100, 100), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(out, middle / 255.0, atol=1e-6)
    assert geometry.to_source((0, 0, 100, 100)) == pytest.approx((75, 0, 375, 300))
    assert geometry.to_source((10, 20, 30, 40)) == pytest.approx((105, 60, 165, 120))


def test_stretch_geometry_scales_each_axis() -> None:
    geometry = stretch((300, 600), (100, 100))
    assert geometry.to_source((10, 10, 50, 90)) == pytest.approx((60, 30, 300, 270))


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    target=st.tuples(st.integers(1, 64), st.integers(1, 64)),
    mode=st.sampled_from(MODES),
    layout=st.sampled_from(("nhwc", "nchw")),
    color=st.sampled_from(("rgb", "bgr", "gray")),
    source_channels=st.sampled_from((1, 3)),
)
def test_any_image_size_gives_exactly_the_target_size(
    height: int,
    width: int,
    target: tuple[int, int],
    mode: str,
    layout: str,
    color: str,
    source_channels: int,
) -> None:
    shape = (height, width) if source_channels == 1 else (height, width, 3)
    image = np.random.default_rng(height * 1000 + width).integers(0, 256, shape, dtype=np.uint8)
    spec = PreprocessSpec(resize=mode, layout=layout, color=color)  # type: ignore[arg-type]
    out = preprocess_image(image, spec, size=target)
    channels = 1 if color == "gray" else 3
    assert out.shape == ((*target, channels) if layout == "nhwc" else (channels, *target))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out.min() >= -1e-6 and out.max() <= 1.0 + 1e-6
    geometry: Geometry = image_geometry(image, spec, size=target)
    x0, y0, x1, y1 = geometry.to_source((0.0, 0.0, float(target[1]), float(target[0])))
    assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height


# --- colour, range, normalisation, layout -------------------------------------------------


def test_rgb_and_bgr_channel_order(tmp_path: Path) -> None:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(samples.astronaut(), cv2.COLOR_RGB2BGR))
    bgr = read_image(path)
    size = bgr.shape[:2]
    rgb_out = preprocess_image(bgr, PreprocessSpec(color="rgb"), size=size)
    bgr_out = preprocess_image(bgr, PreprocessSpec(color="bgr"), size=size)
    np.testing.assert_allclose(rgb_out, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0, atol=1e-6)
    np.testing.assert_allclose(bgr_out, bgr / 255.0, atol=1e-6)
    np.testing.assert_allclose(rgb_out, samples.astronaut() / 255.0, atol=1e-6)  # PNG is lossless


def test_gray_from_colour_and_from_gray(chelsea: np.ndarray, camera: np.ndarray) -> None:
    spec = PreprocessSpec(color="gray")
    out = preprocess_image(chelsea, spec, size=(300, 451))
    assert out.shape == (300, 451, 1)
    # gray is OpenCV's weighting done in float: within half a grey level of cvtColor's
    gray = cv2.cvtColor(chelsea, cv2.COLOR_BGR2GRAY) / 255.0
    np.testing.assert_allclose(out[..., 0], gray, rtol=0, atol=0.5 / 255 + 1e-6)
    for image in (camera, camera[..., np.newaxis]):
        np.testing.assert_allclose(
            preprocess_image(image, spec, size=(512, 512))[..., 0], camera / 255.0
        )


def test_gray_image_for_a_colour_model_repeats_the_channel(camera: np.ndarray) -> None:
    out = preprocess_image(camera, PreprocessSpec(), size=(512, 512))
    assert out.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], camera / 255.0)


def test_input_range_then_mean_std_match_numpy(tmp_path: Path) -> None:
    path = tmp_path / "coffee.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(samples.coffee(), cv2.COLOR_RGB2BGR))
    bgr = read_image(path)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float64)
    size = bgr.shape[:2]

    out = preprocess_image(bgr, PreprocessSpec(input_range=(-1.0, 1.0)), size=size)
    np.testing.assert_allclose(out, rgb / 127.5 - 1.0, atol=1e-5)

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the ImageNet statistics
    out = preprocess_image(bgr, PreprocessSpec(mean=mean, std=std), size=size)
    np.testing.assert_allclose(out, (rgb / 255.0 - np.array(mean)) / np.array(std), atol=1e-5)

    spec = PreprocessSpec(input_range=(0.0, 255.0), mean=(127.0,), std=(128.0,))
    out = preprocess_image(bgr, spec, size=size)
    np.testing.assert_allclose(out, (rgb - 127.0) / 128.0, atol=1e-5)


def test_nchw_is_the_transposed_nhwc(chelsea: np.ndarray) -> None:
    nhwc = preprocess_image(chelsea, PreprocessSpec(resize="letterbox"), size=(64, 80))
    nchw = preprocess_image(
        chelsea, PreprocessSpec(resize="letterbox", layout="nchw"), size=(64, 80)
    )
    assert nchw.shape == (3, 64, 80)
    np.testing.assert_array_equal(nchw, nhwc.transpose(2, 0, 1))


def test_out_is_written_in_place_and_returned(chelsea: np.ndarray) -> None:
    batch = np.zeros((2, 3, 32, 32), np.float32)  # e.g. the model's input tensor
    spec = PreprocessSpec(layout="nchw", size=(32, 32))
    slot = batch[1]
    assert preprocess_image(chelsea, spec, out=slot) is slot
    np.testing.assert_array_equal(batch[1], preprocess_image(chelsea, spec))
    assert not batch[0].any()


def test_out_may_be_any_writeable_view(chelsea: np.ndarray) -> None:
    planes = np.zeros((3, 32, 32), np.float32)
    spec = PreprocessSpec(size=(32, 32), resize="letterbox")
    transposed = planes.transpose(1, 2, 0)  # HxWxC over channel planes: OpenCV cannot write it
    preprocess_image(chelsea, spec, out=transposed)
    np.testing.assert_array_equal(transposed, preprocess_image(chelsea, spec))


def test_wrong_out_buffer_is_refused(chelsea: np.ndarray) -> None:
    spec = PreprocessSpec(size=(32, 32))
    with pytest.raises(
        InputError,
        match=r"float32 array of shape \[32, 32, 3\] \(nhwc\), got float32 \[3, 32, 32\]",
    ):
        preprocess_image(chelsea, spec, out=np.empty((3, 32, 32), np.float32))
    with pytest.raises(InputError, match="got float64"):
        preprocess_image(chelsea, spec, out=np.empty((32, 32, 3)))


def test_a_size_is_required(chelsea: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"no target size.*size=\(height, width\)"):
        preprocess_image(chelsea, PreprocessSpec())


def test_images_that_are_not_opencv_images_are_refused(chelsea: np.ndarray) -> None:
    spec = PreprocessSpec(size=(8, 8))
    with pytest.raises(DataError, match="must be uint8"):
        preprocess_image(chelsea.astype(np.float32), spec)
    with pytest.raises(DataError, match=r"got shape \[300, 451, 4\]"):
        preprocess_image(cv2.cvtColor(chelsea, cv2.COLOR_BGR2BGRA), spec)


# --- files and model inputs ---------------------------------------------------------------


def test_read_image_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: not a readable image"):
        read_image(broken)
    with pytest.raises(DataError, match=r"missing\.png: not a readable image \(missing or not"):
        read_image(tmp_path / "missing.png")
    gray = tmp_path / "camera.png"
    cv2.imwrite(str(gray), samples.camera())
    assert read_image(gray).shape == (512, 512, 3)


def test_spec_for_input_reads_height_and_width() -> None:
    assert spec_for_input((1, 224, 160, 3), PreprocessSpec()) == (224, 160)
    assert spec_for_input((1, 3, 224, 160), PreprocessSpec(layout="nchw")) == (224, 160)
    assert spec_for_input((8, 8, 1), PreprocessSpec(color="gray")) == (8, 8)
    assert spec_for_input((1, -1, -1, 3), PreprocessSpec(size=(320, 320))) == (320, 320)


@pytest.mark.parametrize(
    ("shape", "spec", "message"),
    [
        (
            (1, 8, 8, 1),
            PreprocessSpec(),
            r"\[1, 8, 8, 1\] has 1 channel\(s\) \(nhwc\); color 'rgb' needs 3",
        ),
        ((1, 224, 224, 3), PreprocessSpec(color="gray"), r"color 'gray' needs 1"),
        ((1, 3, 224, 224), PreprocessSpec(), r"looks nchw: set layout"),
        ((1, 10), PreprocessSpec(), r"\[1, 10\] is not an image input"),
        (
            (1, -1, -1, 3),
            PreprocessSpec(),
            r"no fixed height and width; set the preprocessing size",
        ),
        ((1, 224, 224, 3), PreprocessSpec(size=(320, 320)), r"size \[320, 320\] does not match"),
    ],
)
def test_spec_for_input_mismatches(
    shape: tuple[int, ...], spec: PreprocessSpec, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_for_input(shape, spec)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(color="rgb"),
        PreprocessSpec(color="bgr", resize="letterbox", mean=(0.5,), std=(0.25,)),
        PreprocessSpec(color="gray", layout="nchw"),
    ],
)
def test_quantizing_in_the_same_pass_matches_quantizing_afterwards(
    chelsea: np.ndarray, spec: PreprocessSpec, dtype: type
) -> None:
    """The daemon's fused path: 8-bit tensors straight from uint8 pixels, within one step
    of rounding of the float path followed by the runner's quantization."""
    from edge.runtime.tensors import quantize

    scale, zero_point = (0.0078125, -1) if dtype is np.int8 else (1 / 255, 0)
    floats = preprocess_image(chelsea, spec, size=(64, 96))
    expected = quantize(floats, scale, zero_point, np.dtype(dtype))
    out = np.empty_like(expected)
    got = preprocess_image(chelsea, spec, size=(64, 96), out=out, quant=(scale, zero_point, dtype))
    assert got is out and got.dtype == dtype
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(InputError, match=f"writeable {np.dtype(dtype).name} array"):
        preprocess_image(chelsea, spec, size=(64, 96), out=floats, quant=(scale, 0, dtype))
