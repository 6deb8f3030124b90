"""vla_node's ``~/follow_instruction`` action (trimodal_ros_interfaces/action/FollowInstruction):
goal-conditioned execution beside the instruction topic.

A goal is an instruction the node acts on until the client cancels it (the task stops and the robot
holds), its ``duration`` ends (the same), another instruction takes over (a newer goal, or a
message on the instruction topic: ``replaced``), the task stops otherwise (an empty instruction,
``~/stop``, ``instruction_timeout``: ``stopped``) or the node deactivates (``aborted``). Feedback,
once a second: frames acted on, seconds since acceptance, the last frame's scores. Nothing blocks
the node's single-threaded executor: the execute callback awaits a future that the end of the
goal completes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.clock import Clock, ClockType
from rclpy.task import Future
from trimodal_ros_interfaces.action import FollowInstruction

Result = FollowInstruction.Result
CHECK_PERIOD = 0.1     # seconds between checks of the goal's duration and of who owns the task
FEEDBACK_PERIOD = 1.0  # seconds between feedback messages


def _key(handle) -> bytes:
    return bytes(handle.goal_id.uuid)


@dataclass
class _Goal:
    handle: object
    generation: int                 # the task generation the goal started; another one ends it
    duration: float
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    done: Future = field(default_factory=Future)
    last_feedback: float = 0.0
    cancelling: bool = False        # the client cancelled: the task stopped, the goal ends once rclpy says so


class GoalRunner:
    """The action server of ``node`` (a VLANode). ``instruct(text) -> generation`` sets the task as
    an instruction message would; ``task() -> (generation, instruction)`` reads it; ``hold(why)``
    tells the controller to hold."""

    def __init__(self, node, instruct: Callable[[str], int], task: Callable[[], tuple], hold: Callable[[str], None],
                 active: Callable[[], bool], max_chars: Callable[[], int]):
        self.node, self._instruct, self._task, self._hold, self._active = node, instruct, task, hold, active
        self._max_chars = max_chars
        self.goal: Optional[_Goal] = None
        self._accepted = {}  # goal id → its _Goal, until its execute callback takes it
        self.server = ActionServer(node, FollowInstruction, "~/follow_instruction", self._execute,
                                   goal_callback=self._on_goal, handle_accepted_callback=self._on_accepted,
                                   cancel_callback=self._on_cancel)
        self._timer = node.create_timer(CHECK_PERIOD, self._check, clock=Clock(clock_type=ClockType.STEADY_TIME))

    # --- the action server's callbacks -----------------------------------------------------------------
    def _on_goal(self, request) -> GoalResponse:
        text = request.instruction.strip()
        if not self._active():
            self.node.get_logger().warning("follow_instruction goal rejected: the node is not active")
            return GoalResponse.REJECT
        if not text or len(text) > self._max_chars() or not request.duration >= 0:
            self.node.get_logger().warning("follow_instruction goal rejected: empty or over-long instruction, "
                                           "or a negative duration")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle) -> None:
        self.end(Result.REPLACED)  # a newer goal takes over from the one in force
        generation = self._instruct(handle.request.instruction.strip())
        self.goal = self._accepted[_key(handle)] = _Goal(handle, generation, float(handle.request.duration))
        self.node.get_logger().info(f"follow_instruction: {handle.request.instruction.strip()[:200]!r}")
        handle.execute()

    def _on_cancel(self, handle) -> CancelResponse:
        """Stop the task and hold at once; the goal itself ends in ``_check`` once rclpy has moved it
        to CANCELING (ending it here would call ``canceled()`` before that, which rcl refuses)."""
        if self.goal is not None and self.goal.handle is handle and not self.goal.cancelling:
            self.goal.cancelling = True
            self._instruct("")
            self._hold("follow_instruction goal cancelled")
        return CancelResponse.ACCEPT

    async def _execute(self, handle):
        goal = self._accepted.pop(_key(handle))
        outcome = await goal.done
        result = Result(outcome=outcome, frames=goal.frames)
        if outcome == Result.CANCELLED:
            handle.canceled()
        elif outcome == Result.ABORTED:
            handle.abort()
        else:
            handle.succeed()
        return result

    # --- the node's side ------------------------------------------------------------------------------
    def acted(self, generation: int) -> None:
        """A frame of task ``generation`` was acted on (an action published)."""
        if self.goal is not None and self.goal.generation == generation:
            self.goal.frames += 1

    def end(self, outcome: str, stop: bool = False) -> None:
        """End the goal in force with ``outcome``; ``stop``: the task stops too and the robot holds."""
        goal, self.goal = self.goal, None
        if goal is None:
            return
        if stop:
            self._instruct("")
            self._hold(f"follow_instruction goal {outcome}")
        goal.done.set_result(outcome)

    def _check(self) -> None:
        goal = self.goal
        if goal is None:
            return
        if goal.cancelling:
            if goal.handle.is_cancel_requested:
                self.end(Result.CANCELLED)
            return
        generation, instruction = self._task()
        if generation != goal.generation:  # the topic, ~/stop or a timeout changed the task
            return self.end(Result.STOPPED if instruction is None else Result.REPLACED)
        elapsed = time.monotonic() - goal.started
        if goal.duration > 0 and elapsed >= goal.duration:
            return self.end(Result.TIMED_OUT, stop=True)
        if elapsed - goal.last_feedback >= FEEDBACK_PERIOD:
            goal.last_feedback = elapsed
            agreement, ood = self.node.scores
            goal.handle.publish_feedback(FollowInstruction.Feedback(frames=goal.frames, elapsed=elapsed,
                                                                    agreement=agreement, ood=ood))

    def destroy(self) -> None:
        self.end(Result.ABORTED)
        self.node.destroy_timer(self._timer)
        self.server.destroy()
