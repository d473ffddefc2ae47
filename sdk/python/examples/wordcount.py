"""Example worker: counts words. Setup runs once per replica, then every input is served.

App spec:
    [functions.count]
    image = "flotilla/pyworker"      # an image with python3 and these two files in /app
    command = ["python3", "/app/wordcount.py"]
    mode = "worker"
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flotilla_worker  # noqa: E402

LOADED_BY = os.getpid()  # stands in for an expensive model load, done once


def handle(data: bytes) -> bytes:
    text = data.decode()
    if text.startswith("fail:"):
        raise ValueError(text[5:])
    return ("%d words (worker pid %d)" % (len(text.split()), LOADED_BY)).encode()


if __name__ == "__main__":
    flotilla_worker.serve(handle)
