"""llama.cpp's continuous-batching HTTP server from the xllamacpp wheel, in a process of its own (own llama.cpp)."""

from __future__ import annotations

import argparse
import signal
import threading

import xllamacpp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--parallel", type=int, required=True, help="slots decoded together")
    parser.add_argument("--context", type=int, required=True, help="tokens of context per slot")
    arguments = parser.parse_args()
    params = xllamacpp.CommonParams()
    params.model.path = arguments.model
    params.n_parallel = arguments.parallel
    params.n_ctx = arguments.context * arguments.parallel  # llama.cpp's server splits n_ctx between its slots
    params.cpuparams.n_threads = arguments.threads
    params.cpuparams_batch.n_threads = arguments.threads
    params.hostnames = ["127.0.0.1"]
    params.port = arguments.port
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server = xllamacpp.Server(params)  # serves HTTP from its own threads until it is garbage
    print(f"serving on {server.listening_address}", flush=True)
    stopping.wait()
    del server


if __name__ == "__main__":
    main()
