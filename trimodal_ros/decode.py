"""The one decoder of incoming messages, for training (bags, read with rosbags) and serving
(topics, received by rclpy) alike: both hand over objects with the ROS field names, so one
function per message type serves both, with the same accepted encodings and the same errors.

Every decoder raises ``BadInput`` with a ``kind`` (the diagnostics counter it goes to) instead of
returning a wrong picture or wrong joints. No rclpy, no torch.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .interface import MAX_INSTRUCTION_CHARS

# encoding -> (channels, channel order that gives RGB); 8-bit only: the model eats uint8
ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8uc1": (1, (0, 0, 0)),
    "8uc3": (3, (2, 1, 0)),  # OpenCV's untagged 3-channel frame: BGR, as cv_bridge takes it
}
# 4:2:2 YUV, two bytes a pixel: byte offsets of (Y0, U, Y1, V) in each 4-byte pair of pixels
YUV422 = {"yuv422": (1, 0, 3, 2), "uyvy": (1, 0, 3, 2), "yuv422_yuy2": (0, 1, 2, 3), "yuyv": (0, 1, 2, 3)}
# 8-bit Bayer mosaics: the colour (0 R, 1 G, 2 B) of each pixel of the 2x2 tile, row-major
BAYER = {"bayer_rggb8": (0, 1, 1, 2), "bayer_bggr8": (2, 1, 1, 0), "bayer_gbrg8": (1, 2, 0, 1),
         "bayer_grbg8": (1, 0, 2, 1)}
COMPRESSED_FORMATS = ("jpeg", "png")
MAX_PIXELS = 4096 * 4096  # a camera frame larger than this is a bug upstream, not a picture


class BadInput(ValueError):
    """A message that must be skipped. ``kind`` names the diagnostics counter it goes to."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def stamp_ns(msg) -> int:
    """Header stamp of ``msg`` (or of a Header / Time itself) in integer nanoseconds."""
    t = getattr(msg, "header", msg)
    t = getattr(t, "stamp", t)
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _bytes(data) -> np.ndarray:
    """A message's ``data`` (bytes, array.array('B'), list or uint8 ndarray) as a flat uint8 view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, list):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image → uint8 RGB (H, W, 3). Honours ``step`` (row padding); rejects unknown
    encodings, 16-bit data, and data whose length is not height × step."""
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS and enc not in YUV422 and enc not in BAYER:
        raise BadInput("bad_image", f"unsupported image encoding {msg.encoding!r} "
                                    f"(supported: {sorted(ENCODINGS) + sorted(YUV422) + sorted(BAYER)})")
    ch, order = ENCODINGS.get(enc, (2 if enc in YUV422 else 1, None))
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise BadInput("bad_image", f"empty image {w}x{h}")
    if h * w > MAX_PIXELS:
        raise BadInput("bad_image", f"image {w}x{h} is larger than {MAX_PIXELS} pixels")
    if step < w * ch:
        raise BadInput("bad_image", f"step {step} < width {w} x {ch} channels")
    buf = _bytes(msg.data)
    if buf.size != h * step:
        raise BadInput("bad_image", f"image data has {buf.size} bytes, expected height {h} x step {step} = {h * step}")
    rows = buf.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc in YUV422:
        return _yuv422_to_rgb(rows.reshape(h, w * 2), YUV422[enc])
    if enc in BAYER:
        return _bayer_to_rgb(rows[:, :, 0], BAYER[enc])
    if order == (0, 1, 2) and ch == 3:
        return rows
    return np.ascontiguousarray(rows[:, :, list(order)])


def _yuv422_to_rgb(rows: np.ndarray, offsets) -> np.ndarray:
    """(H, 2W) packed 4:2:2 → (H, W, 3) RGB (BT.601, full range, as OpenCV's YUV2RGB_UYVY)."""
    h, n = rows.shape
    if n % 4:
        raise BadInput("bad_image", "a 4:2:2 image needs an even width")
    q = rows.reshape(h, n // 4, 4).astype(np.float32)
    y = np.stack([q[..., offsets[0]], q[..., offsets[2]]], axis=-1).reshape(h, n // 2)  # (H, W)
    u = np.repeat(q[..., offsets[1]], 2, axis=1) - 128.0
    v = np.repeat(q[..., offsets[3]], 2, axis=1) - 128.0
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _bayer_to_rgb(raw: np.ndarray, tile) -> np.ndarray:
    """(H, W) 8-bit Bayer mosaic → (H, W, 3) RGB: each 2x2 tile's R, mean G and B fill its four
    pixels (half-resolution colour; enough for a 224² model input)."""
    h, w = raw.shape
    if h % 2 or w % 2:
        raise BadInput("bad_image", "a Bayer image needs an even width and height")
    t = raw.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4).astype(np.float32)
    rgb = np.stack([t[..., [i for i, c in enumerate(tile) if c == k]].mean(-1) for k in range(3)], axis=-1)
    rgb = np.rint(rgb).astype(np.uint8)
    return np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)


def _cv_bridge():
    """cv_bridge's decoder where a ROS install has it (None otherwise)."""
    try:
        from cv_bridge import CvBridge
    except Exception:  # noqa: BLE001 - absent, or present without a working cv2
        return None
    return CvBridge()


_BRIDGE = None
_BRIDGE_CHECKED = False


def compressed_image_from_msg(msg, use_cv_bridge: Optional[bool] = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, as image_transport's compressed plugin sends) →
    uint8 RGB (H, W, 3). Decodes with cv_bridge where it is installed, else with Pillow."""
    global _BRIDGE, _BRIDGE_CHECKED
    fmt = str(msg.format).lower()
    kind = next((f for f in COMPRESSED_FORMATS if f in fmt or (f == "jpeg" and "jpg" in fmt)), None)
    if kind is None:
        raise BadInput("bad_image", f"unsupported compressed format {msg.format!r} (supported: jpeg, png)")
    data = _bytes(msg.data)
    if data.size == 0:
        raise BadInput("bad_image", "compressed image has no data")
    _check_compressed_size(data, kind)  # from the file's header, before any decoder allocates the frame
    if use_cv_bridge is None:
        if not _BRIDGE_CHECKED:
            _BRIDGE, _BRIDGE_CHECKED = _cv_bridge(), True
        use_cv_bridge = _BRIDGE is not None
    try:
        if use_cv_bridge:
            rgb = (_BRIDGE or _cv_bridge()).compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8")
        else:
            rgb = _pil_decode(data)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file: skip it, say why
        raise BadInput("bad_image", f"cannot decode {kind} image: {type(e).__name__}: {e}") from None
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadInput("bad_image", f"decoded {kind} image has shape {rgb.shape}, expected (H, W, 3)")
    return rgb


def _check_compressed_size(data: np.ndarray, kind: str) -> None:
    """BadInput for a jpeg/png whose header says it is larger than MAX_PIXELS (Pillow reads only the
    header here), or whose header cannot be read."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - not an image at all: skip it, say why
        raise BadInput("bad_image", f"cannot decode {kind} image: {type(e).__name__}: {e}") from None
    if w * h > MAX_PIXELS:
        raise BadInput("bad_image", f"image {w}x{h} is larger than {MAX_PIXELS} pixels")


def _pil_decode(data: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data.tobytes())) as im:
        return np.asarray(im.convert("RGB"))


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> Tuple[str, bytes]:
    """uint8 RGB (H, W, 3) → (CompressedImage ``format``, data) as image_transport's compressed plugin
    writes them: what ``compressed_image_from_msg`` reads back."""
    import io

    from PIL import Image as PILImage

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be jpeg or png, not {fmt!r}")
    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format=fmt.upper(), **(
        {"quality": quality} if fmt == "jpeg" else {}))
    return f"rgb8; {fmt} compressed bgr8", buf.getvalue()


def joints_from_msg(msg, names: Sequence[str]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """sensor_msgs/JointState → (positions, velocities or None) float32 in the order of ``names``.

    Extra joints the model does not use (a head pan, another arm) are ignored; a missing or
    non-finite joint, or arrays whose length does not match ``name``, make the message bad.
    """
    values = joint_values(msg, names)
    missing = [j for j in names if j not in values]
    if missing:
        unknown = [j for j in msg.name if j not in set(names)]
        if unknown:
            raise BadInput("unknown_joint_names", f"joint_states names {unknown} are not the expected joints; "
                                                  f"missing {missing} (parameter joint_names)")
        raise BadInput("missing_joints", f"joint_states lacks joints {missing}")
    pos = np.array([values[j][0] for j in names], np.float32)
    vel = [values[j][1] for j in names]
    return pos, (None if vel[0] is None else np.array(vel, np.float32))


def joint_values(msg, names: Sequence[str]) -> Dict[str, Tuple[float, Optional[float]]]:
    """sensor_msgs/JointState → {joint: (position, velocity or None)} for those of ``names`` it holds:
    one publisher may send the arm and another the gripper (``Inputs.merge_joints`` joins them).
    Malformed arrays, NaN, or none of ``names`` at all make the message bad."""
    n = len(msg.name)
    position, velocity = np.asarray(msg.position, np.float64), np.asarray(msg.velocity, np.float64)
    if position.size != n:
        raise BadInput("bad_joint_state", f"joint_states has {n} names but {position.size} positions")
    if velocity.size not in (0, n):
        raise BadInput("bad_joint_state", f"joint_states has {n} names but {velocity.size} velocities")
    wanted = set(names)
    out = {j: (float(position[i]), float(velocity[i]) if velocity.size else None)
           for i, j in enumerate(msg.name) if j in wanted}
    if not out:
        raise BadInput("unknown_joint_names", f"joint_states names {list(msg.name)[:8]} are none of the expected "
                                              f"joints {list(names)} (parameter joint_names)")
    if not all(np.isfinite(p) and (v is None or np.isfinite(v)) for p, v in out.values()):
        raise BadInput("nan_joints", "joint_states has NaN or infinite positions/velocities")
    return out


def instruction_from_msg(text: str, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """std_msgs/String data → the instruction with whitespace normalised; "" means *stop*.
    Over-long text is bad input (the text tower truncates anyway: 100 kB is a bug upstream)."""
    if len(text) > max_chars:
        raise BadInput("bad_instruction", f"instruction of {len(text)} chars exceeds {max_chars}")
    return " ".join(str(text).split())
