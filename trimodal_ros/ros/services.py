"""vla_node's ``~/stop`` and ``~/pause`` services: a controller-side or operator stop that does not
depend on the instruction topic's delivery order."""

from __future__ import annotations

from std_srvs.srv import SetBool, Trigger


def add_stop_and_pause(node):
    """Create both services on ``node``; their callbacks (an in-process driver may call them)."""
    def stop(request, response):
        """~/stop (std_srvs/Trigger): the task ends, as an empty instruction does; the robot holds."""
        node.inputs.instruct("")
        node.hold("stopped by ~/stop")
        response.success, response.message = True, "stopped: waiting for a new instruction"
        return response

    def pause(request, response):
        """~/pause (std_srvs/SetBool): true holds and answers no frame until false; the task stays as it was."""
        node.paused = bool(request.data)
        if node.paused:
            node.hold("paused by ~/pause")
        response.success, response.message = True, "paused" if node.paused else "resumed"
        return response

    node.create_service(Trigger, "~/stop", stop)
    node.create_service(SetBool, "~/pause", pause)
    return stop, pause
