"""Runs one Lambda handler invocation in a child process, like the Lambda Python runtime does.

    python lambda_bootstrap.py <module.function> <result-file>   (event JSON on stdin)

Writes ``{"result": ...}`` or Lambda's error shape ``{"errorMessage", "errorType", "stackTrace"}``
to the result file; the handler's own stdout/stderr are its logs. Imports nothing of the project.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
import uuid


class LambdaContext:
    def __init__(self) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = "$LATEST"
        self.invoked_function_arn = os.environ.get("LOCAL_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + float(os.environ.get("LOCAL_FUNCTION_TIMEOUT", "3"))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(handler_path: str, result_file: str) -> int:
    module_name, _, function_name = handler_path.rpartition(".")
    # Every thread's stack on stderr just before the runner's time-out stops this process.
    faulthandler.dump_traceback_later(max(0.5, float(os.environ.get("LOCAL_FUNCTION_TIMEOUT", "3")) - 1.0))
    try:
        event = json.loads(sys.stdin.read() or "{}")
        handler = getattr(importlib.import_module(module_name), function_name)
        outcome = {"result": handler(event, LambdaContext())}
    except Exception as exc:
        outcome = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
