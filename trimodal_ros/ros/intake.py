"""Which camera frame vla_node infers on, with every frame counted in the ledger.

Per frame (``rate_hz`` 0) the camera callback infers itself, so frames that arrived during the last
inference must not become a backlog: it takes every frame already waiting in the subscription's
queue and keeps the newest good one (the older ones are *replaced*). At a rate, a one-slot mailbox
keeps the newest frame until the timer's tick uses it, if it is still fresh. Images decode through
``conversions`` (the decoder the bags use too)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from sensor_msgs.msg import CompressedImage

from .conversions import BadInput, compressed_image_from_msg, image_from_msg, stamp_ns
from .ledger import Ledger


@dataclass
class Frame:
    rgb: np.ndarray   # (H, W, 3) uint8
    stamp: int        # ns, camera header
    received: float   # time.monotonic() at arrival
    frame_id: str = ""  # the camera header's, carried to every output of the frame


def decode_image(msg) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage → (H, W, 3) uint8 RGB; BadInput says why not."""
    return compressed_image_from_msg(msg) if isinstance(msg, CompressedImage) else image_from_msg(msg)


def take_waiting(sub):
    """(message, info) already waiting in ``sub``'s queue, or None: what the executor would take next."""
    with sub.handle:
        return sub.handle.take_message(sub.msg_type, False)


class CameraIntake:
    def __init__(self, ledger: Ledger, log: Callable[..., None], stamp: Callable[[object], int] = stamp_ns):
        self.ledger, self._log, self._stamp = ledger, log, stamp  # stamp: a message's time in ns
        self.slot: Optional[Frame] = None  # rate mode: the newest frame waiting for its tick

    def decode(self, msg) -> Optional[Frame]:
        """Count the frame in; decode it, or count it bad (None)."""
        self.ledger.frame_in()
        try:
            rgb = decode_image(msg)
        except BadInput as e:
            self.ledger.settle("bad_image")
            return self._log("bad_image", f"skipped bad image: {e}")
        return Frame(rgb, self._stamp(msg), time.monotonic(), msg.header.frame_id)

    def newest(self, msg, sub=None) -> Optional[Frame]:
        """``msg`` decoded, or (with ``sub``) the newest good frame of it and those waiting in ``sub``."""
        frame = self.decode(msg)
        while sub is not None and (more := take_waiting(sub)) is not None:
            newer = self.decode(more[0])
            if newer is not None:
                if frame is not None:
                    self.ledger.settle("replaced")
                frame = newer
        return frame

    def put(self, frame: Frame) -> None:
        """Rate mode: ``frame`` waits for the tick, replacing the one waiting."""
        if self.slot is not None:
            self.ledger.settle("replaced")
        self.slot = frame

    def pop(self, max_age: Optional[float] = None) -> Optional[Frame]:
        """The waiting frame (the slot empties), or None; with ``max_age`` one older than that counts stale."""
        frame, self.slot = self.slot, None
        if frame is not None and max_age is not None and time.monotonic() - frame.received > max_age:
            self.ledger.settle("stale_image")
            return self._log("stale_image", "camera frame older than max_input_age when its tick came: not used")
        return frame

    def drop(self) -> None:
        """The node stops: a waiting frame ends inactive."""
        if self.pop() is not None:
            self.ledger.settle("inactive")
