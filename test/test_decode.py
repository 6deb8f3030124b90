"""One decoder for training (rosbags messages) and serving (rclpy messages): the same frames and
joints, the same accepted encodings and the same errors, whichever side the message came from."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, JointState

from trimodal_ros.data import messages as M
from trimodal_ros.decode import ENCODINGS, BadInput, compressed_image_from_msg, image_from_msg, joints_from_msg
from trimodal_ros.interface import SAWYER_JOINTS
from trimodal_ros.ros.conversions import compressed_image_to_msg


def both(msg_rosbags, rclpy_type):
    """The same message as rosbags hands it to the dataset and as rclpy hands it to the node."""
    raw = M.typestore().serialize_cdr(msg_rosbags, msg_rosbags.__msgtype__)
    return msg_rosbags, deserialize_message(bytes(raw), rclpy_type)


def image(encoding, h=6, w=5, step=None, data=None):
    ch = ENCODINGS.get(encoding, (3,))[0]
    step = step or w * ch
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, h * step, dtype=np.uint8) if data is None else data
    return M.msg_class(M.IMAGE)(header=M.header_msg(5), height=h, width=w, encoding=encoding, is_bigendian=0,
                                step=step, data=np.asarray(data, np.uint8))


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_decodes_identically_from_bags_and_topics(encoding):
    for step in (None, 5 * ENCODINGS[encoding][0] + 3):  # with and without row padding
        bag_msg, ros_msg = both(image(encoding, step=step), Image)
        a, b = image_from_msg(bag_msg), image_from_msg(ros_msg)
        assert a.shape == (6, 5, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    rgb = image("rgb8")
    bgr = image("bgr8", data=np.asarray(rgb.data).reshape(6, 5, 3)[..., ::-1].reshape(-1))
    np.testing.assert_array_equal(image_from_msg(rgb), image_from_msg(bgr))


@pytest.mark.parametrize("bad,match", [(image("mono16"), "mono16"), (image("nv21"), "nv21"),
                                       (image("rgb8", data=np.zeros(7, np.uint8)), "bytes"),
                                       (image("rgb8", step=4), "step")])
def test_bad_images_give_the_same_error_on_both_sides(bad, match):
    for msg in both(bad, Image):
        with pytest.raises(BadInput, match=match) as e:
            image_from_msg(msg)
        assert e.value.kind == "bad_image"


def test_joint_states_decode_identically_and_fail_alike():
    names = list(reversed(SAWYER_JOINTS)) + ["head_pan"]
    pos = np.arange(10, dtype=np.float64) / 7
    for msg in both(M.joint_state_msg(names, pos, -pos, 3), JointState):
        p, v = joints_from_msg(msg, SAWYER_JOINTS)
        np.testing.assert_array_equal(p, (pos[:9][::-1]).astype(np.float32))
        np.testing.assert_array_equal(v, (-pos[:9][::-1]).astype(np.float32))
    for bad, kind in ((M.joint_state_msg(SAWYER_JOINTS, [np.nan] * 9, None, 0), "nan_joints"),
                      (M.joint_state_msg(SAWYER_JOINTS[:4], [0.0] * 4, None, 0), "missing_joints"),
                      (M.joint_state_msg(["w1", "w2"], [0.0, 0.0], None, 0), "unknown_joint_names")):
        kinds = []
        for msg in both(bad, JointState):
            with pytest.raises(BadInput) as e:
                joints_from_msg(msg, SAWYER_JOINTS)
            kinds.append(e.value.kind)
        assert kinds == [kind, kind]


def test_compressed_png_is_lossless_and_jpeg_close(monkeypatch):
    rgb = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_image_from_msg(compressed_image_to_msg(rgb, "png")), rgb)
    smooth = np.repeat(np.repeat(rgb[::8, ::8], 8, 0), 8, 1)  # JPEG-friendly blocks
    out = compressed_image_from_msg(compressed_image_to_msg(smooth, "jpeg", quality=95))
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).mean() < 8
    for bad, match in ((CompressedImage(format="tiff", data=b"xx"), "tiff"),
                       (CompressedImage(format="jpeg", data=b""), "no data"),
                       (CompressedImage(format="png", data=b"\x89PNG not really"), "cannot decode")):
        with pytest.raises(BadInput, match=match):
            compressed_image_from_msg(bad)


def test_compressed_decoders_agree_where_opencv_is_installed():
    """cv_bridge decodes with OpenCV; where it is installed the node uses it. Pillow (the
    fallback) must give the same pixels: exactly for PNG, within JPEG's IDCT rounding."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv_bridge's decoder) is not installed here")
    rgb = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    for fmt, tol in (("png", 0), ("jpeg", 2)):
        msg = compressed_image_to_msg(rgb, fmt)
        ours = compressed_image_from_msg(msg, use_cv_bridge=False)
        cv = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.abs(ours.astype(int) - cv.astype(int)).max() <= tol, fmt


def _img(encoding, h, w, step, data):
    return M.msg_class(M.IMAGE)(header=M.header_msg(5), height=h, width=w, encoding=encoding, is_bigendian=0,
                                step=step, data=np.asarray(data, np.uint8).reshape(-1))


def test_8uc3_is_opencvs_bgr_as_cv_bridge_takes_it():
    blue_bgr = np.zeros((2, 2, 3), np.uint8)
    blue_bgr[..., 0] = 255  # an OpenCV frame of a blue scene: B first
    rgb = image_from_msg(_img("8UC3", 2, 2, 6, blue_bgr))
    assert rgb[0, 0].tolist() == [0, 0, 255]  # blue, not red


def test_yuv422_and_bayer_decode_to_the_colours_they_hold():
    # UYVY pairs of a mid-grey and a saturated red pixel pair (BT.601: red = Y 76, U 85, V 255)
    uyvy = np.array([[128, 128, 128, 128, 85, 76, 255, 76]], np.uint8)  # (1, 8): 4 pixels
    rgb = image_from_msg(_img("yuv422", 1, 4, 8, uyvy))
    assert rgb[0, 0].tolist() == [128, 128, 128] and rgb[0, 3, 0] > 240 and rgb[0, 3, 1:].max() < 20
    yuyv = uyvy.reshape(-1, 4)[:, [1, 0, 3, 2]].reshape(1, 8)
    np.testing.assert_array_equal(image_from_msg(_img("yuv422_yuy2", 1, 4, 8, yuyv)), rgb)
    tile = {"bayer_rggb8": [[200, 100], [100, 50]], "bayer_bggr8": [[50, 100], [100, 200]],
            "bayer_gbrg8": [[100, 50], [200, 100]], "bayer_grbg8": [[100, 200], [50, 100]]}
    for enc, t in tile.items():
        raw = np.tile(np.array(t, np.uint8), (2, 3))  # (4, 6)
        out = image_from_msg(_img(enc, 4, 6, 6, raw))
        assert out.shape == (4, 6, 3) and (out == [200, 100, 50]).all(), enc  # R 200, G 100, B 50 everywhere
    with pytest.raises(BadInput, match="even"):
        image_from_msg(_img("bayer_rggb8", 3, 2, 2, np.zeros(6)))


def test_an_oversized_compressed_image_is_refused_before_it_is_decoded(monkeypatch):
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (5000, 4000)).save(buf, format="PNG")  # 20 Mpx, a few kB compressed
    msg = CompressedImage(format="png", data=buf.getvalue())
    import trimodal_ros.decode as D

    monkeypatch.setattr(D, "_pil_decode", lambda data: pytest.fail("decoded before the size check"))
    for bridge in (False, True):
        monkeypatch.setattr(D, "_cv_bridge", lambda: pytest.fail("decoded before the size check"))
        with pytest.raises(BadInput, match="larger than"):
            compressed_image_from_msg(msg, use_cv_bridge=bridge)
